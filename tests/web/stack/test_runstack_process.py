"""`python manage.py runstack` as `make run` starts it: serves HTTP, then Ctrl-C stops every process;
a killed embedded Redis comes back where it was; a killed worker, coordinator or daphne is started
again and the stack goes on."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from contextlib import closing, contextmanager
from pathlib import Path

from django.contrib.auth.hashers import check_password

from lfl_web.redis_server import free_port
from lfl_web.stack.supervisor import kill_group

from ..conftest import tiny_config
from ..polling import gone, wait_until

REPO = Path(__file__).resolve().parents[3]


def collect_lines(stream, lines: list[str]) -> threading.Thread:
    def read():
        for line in stream:
            lines.append(line.rstrip("\n"))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def started_pids(lines: list[str]) -> dict[str, int]:
    """{"embedded redis": pid, "celery worker": pid, "daphne": pid} from "started NAME (pid N)" lines."""
    found = {}
    for line in lines:
        if line.startswith("started ") and "(pid " in line:
            name = line[len("started "):line.index(" (pid ")]
            found[name] = int(line.split("(pid ")[1].split(")")[0])
    return found


def restarted_pids(lines: list[str]) -> dict[str, int]:
    """{name: pid} of the latest "restarted NAME (pid N)" line of each part."""
    return {line[len("restarted "):line.index(" (pid ")]: int(line.split("(pid ")[1].split(")")[0])
            for line in lines if line.startswith("restarted ") and "(pid " in line}


def start_runstack(var_dir, port: int) -> tuple[subprocess.Popen, list[str], dict]:
    """`manage.py runstack` on a fresh var folder and `port`, as a new user starts it (no DATABASE_URL,
    REDIS_URL or admin password from this environment); returns the process, its (empty) line list and its environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "LFL_ADMIN_PASSWORD")}
    env.update(LFL_VAR_DIR=str(var_dir), LFL_PORT=str(port), LFL_ADMIN_USER="admin", PYTHONUNBUFFERED="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    stack = subprocess.Popen([sys.executable, "manage.py", "runstack"], cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    return stack, [], env


def test_runstack_serves_the_login_page_and_ctrl_c_stops_every_process(tmp_path):
    port = free_port()
    stack, lines, env = start_runstack(tmp_path, port)
    reader = collect_lines(stack.stdout, lines)
    try:
        login = f"http://127.0.0.1:{port}/accounts/login/"
        assert wait_until(lambda: answers(login) or stack.poll() is not None, timeout=90, interval=0.2)
        assert stack.poll() is None and answers(login), "\n".join(lines)
        assert answers(f"http://127.0.0.1:{port}/static/admin/css/base.css")  # the admin gets its styles
        assert wait_until(lambda: any("lfl is running: open http://127.0.0.1" in line for line in lines), timeout=30)
        pids = started_pids(lines)
        assert set(pids) == {"embedded redis", "celery worker", "coordinator", "daphne"}, "\n".join(lines)
        password = next(line.split("password: ")[1] for line in lines if "with password: " in line)
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            [(stored,)] = db.execute("select password from auth_user where username = 'admin'").fetchall()
        assert check_password(password, stored)

        stack.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal delivers
        assert stack.wait(60) == 0, "\n".join(lines)
        reader.join(10)
        assert lines[-1] == "lfl stopped."
        assert all(wait_until(lambda pid=pid: gone(pid), timeout=10) for pid in pids.values()), pids
        for pid in pids.values():  # nothing left in their process groups (the worker's pool included)
            assert wait_until(lambda pid=pid: group_is_empty(pid), timeout=10), pid
    finally:
        if stack.poll() is None:
            kill_group(stack.pid)
            stack.wait()
        for pid in started_pids(lines).values():
            kill_group(pid)


def group_is_empty(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def redis_address(pid: int) -> str:
    """host:port of a running redis-server, from the process title it gives itself."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[0].split()[-1]


def api(url: str, key: str, data: dict | None = None) -> dict:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Authorization": f"Token {key}",
                                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@contextmanager
def ready_stack(var_dir):
    """`runstack` started as in `start_runstack` and running ("lfl is running"); yields (process, its output
    lines, its environment, its base URL); stops it with Ctrl-C and kills every part it started or restarted."""
    port = free_port()
    stack, lines, env = start_runstack(var_dir, port)
    collect_lines(stack.stdout, lines)
    try:
        assert wait_until(lambda: any("lfl is running" in line for line in lines) or stack.poll() is not None,
                          timeout=90, interval=0.2), "\n".join(lines)
        yield stack, lines, env, f"http://127.0.0.1:{port}"
    finally:
        if stack.poll() is None:
            stack.send_signal(signal.SIGINT)
            try:
                stack.wait(60)
            except subprocess.TimeoutExpired:
                kill_group(stack.pid)
                stack.wait()
        for pid in [*started_pids(lines).values(), *restarted_pids(lines).values()]:
            kill_group(pid)


def api_key(env: dict) -> str:
    """A new API token for the stack's administrator."""
    created = subprocess.run([sys.executable, "manage.py", "create_api_token", "admin", "--name", "t"], cwd=REPO,
                             env=env, capture_output=True, text=True, check=True)
    return created.stdout.strip().splitlines()[-1]


def finished_status(base: str, key: str, experiment: dict, timeout: float) -> str:
    """The experiment's status once it has ended (or its last one, after `timeout` seconds)."""
    def status() -> str:
        return api(f"{base}/api/experiments/{experiment['id']}/", key)["experiment"]["status"]

    wait_until(lambda: status() in ("succeeded", "failed", "cancelled"), timeout=timeout, interval=0.5)
    return status()


def test_runstack_restarts_a_killed_redis_where_it_was_and_the_worker_runs_what_comes_next(tmp_path):
    with ready_stack(tmp_path) as (stack, lines, env, base):
        first = started_pids(lines)["embedded redis"]
        address = redis_address(first)
        os.kill(first, signal.SIGKILL)

        assert wait_until(lambda: any(line.startswith("restarted embedded redis") for line in lines), timeout=20)
        assert stack.poll() is None and answers(f"{base}/accounts/login/"), "\n".join(lines)
        again = int(next(line for line in lines if line.startswith("restarted embedded redis")).split("(pid ")[1][:-1])
        assert again != first and redis_address(again) == address  # the same port (and password: see below)
        assert any(line.startswith("sent 0 queued experiment(s) to the restarted redis") for line in lines)

        key = api_key(env)
        experiment = api(f"{base}/api/experiments/", key, {"name": "after the restart", "config": tiny_config()})
        assert finished_status(base, key, experiment, 90) == "succeeded", "\n".join(lines)  # worker and daphne reconnected


def chunks_running(database: Path) -> bool:
    """Whether the stack's worker holds a chunk of a search (read from its SQLite file)."""
    with closing(sqlite3.connect(database, timeout=10)) as db:
        return db.execute("select count(*) from experiments_chunk where status = 'running'").fetchone()[0] > 0


def test_runstack_restarts_a_killed_worker_coordinator_and_daphne_and_the_running_search_finishes(tmp_path):
    with ready_stack(tmp_path) as (stack, lines, env, base):
        key = api_key(env)
        config = tiny_config(search={"population_size": 6, "generations": 3}, training={"steps": 200},
                             evaluation={"strategy": "batched", "max_population_chunk": 2})
        experiment = api(f"{base}/api/experiments/", key, {"name": "through a lost worker", "config": config})
        assert wait_until(lambda: chunks_running(tmp_path / "db.sqlite3"), timeout=90, interval=0.05), "\n".join(lines)
        worker = started_pids(lines)["celery worker"]
        os.kill(worker, signal.SIGKILL)  # the parent only: its pool process is left behind, mid-chunk

        assert wait_until(lambda: "celery worker" in restarted_pids(lines), timeout=30), "\n".join(lines)
        assert "celery worker exited (code -9); restarting it" in lines
        assert wait_until(lambda: group_is_empty(worker), timeout=10)  # the orphaned pool process was killed

        assert finished_status(base, key, experiment, 180) == "succeeded", "\n".join(lines)

        for name in ("coordinator", "daphne"):
            os.kill(started_pids(lines)[name], signal.SIGKILL)
        assert wait_until(lambda: {"coordinator", "daphne"} <= set(restarted_pids(lines)), timeout=30), "\n".join(lines)
        assert wait_until(lambda: answers(f"{base}/accounts/login/"), timeout=60, interval=0.2), "\n".join(lines)
        assert stack.poll() is None, "\n".join(lines)
