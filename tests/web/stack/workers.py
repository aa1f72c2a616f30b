"""Real Celery worker and coordinator processes on the test database and an embedded Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from lfl_web.stack.supervisor import kill_group

from ..databases import shared_database_url
from ..polling import wait_until

REPO = Path(__file__).resolve().parents[3]


def process_env(redis_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ, "DJANGO_SETTINGS_MODULE": "lfl_web.settings", "REDIS_URL": redis_url,
        "DATABASE_URL": shared_database_url(), "LFL_VAR_DIR": str(var_dir), "LFL_CHANNEL_LAYER": "redis",
        "LFL_CHUNK_DISPATCH": "celery", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra,
    }


class Processes:
    """Starts named processes with their logs under `folder`; `stop_all` ends every one (also on failure)."""

    def __init__(self, redis_url: str, folder: Path, **env: str):
        self.redis_url, self.folder, self.env = redis_url, folder, env
        self.running: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        with self.log(name).open("w") as log:
            process = subprocess.Popen(command, cwd=REPO, env=process_env(self.redis_url, self.folder / "var", **self.env),
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.running[name] = process
        return process

    def worker(self, name: str, queues: str | None = None, pool: str = "solo") -> subprocess.Popen:
        """A one-process worker `name@host` (`pool`: solo, or prefork with one pool process) on the
        search and evaluation queues; returns once it is ready."""
        queues = queues or f"celery,{settings.LFL_EVALUATION_QUEUE}"
        process = self.start(name, [
            sys.executable, "-m", "celery", "-A", "lfl_web", "worker", f"--pool={pool}", "--concurrency=1",
            "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}@%h",
            "-Q", queues])
        assert wait_until(lambda: "ready." in self.log(name).read_text() or process.poll() is not None, timeout=90), \
            self.logs()
        assert process.poll() is None, self.logs()
        return process

    def coordinator(self, interval: float = 0.5) -> subprocess.Popen:
        return self.start("coordinator", [sys.executable, "manage.py", "coordinate", "--interval", str(interval)])

    def pool_processes(self, name: str) -> list[int]:
        """The pids of a prefork worker's pool processes (its parent's children)."""
        parent = self.running[name].pid
        return [pid for pid in all_pids() if parent_of(pid) == parent]

    def kill(self, name: str) -> None:
        """SIGKILL the process and its group, as a lost machine would end it."""
        kill_group(self.running[name].pid)
        self.running[name].wait()

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name).read_text()[-3000:]}" for name in self.running)

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(15)
            kill_group(process.pid)
            process.wait()


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def parent_of(pid: int) -> int | None:
    """The parent pid of `pid`, from /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
