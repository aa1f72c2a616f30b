"""`make run`'s pieces: the first admin, the embedded Redis, the supervisor and the runstack command."""

import io
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
import redis
from celery.utils.nodenames import host_format
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from lfl_web.experiments.fanout import dispatch, search_driver
from lfl_web.experiments.models import Chunk, ChunkStatus
from lfl_web.redis_server import EmbeddedRedis, free_port
from lfl_web.stack.admin_account import ensure_admin
from lfl_web.stack.management.commands import runstack
from lfl_web.stack.supervisor import StopOnSignals, Supervisor, port_is_free

from ..conftest import tiny_config
from ..polling import gone, wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_first_admin_gets_a_random_password_shown_once(db):
    first = ensure_admin("admin")
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(first) and len(first) >= 16
    assert ensure_admin("admin") is None  # later starts leave it alone
    user.delete()
    assert ensure_admin("admin") != first  # never a fixed default


def test_a_given_admin_password_is_used_and_a_weak_one_refused(db):
    with pytest.raises(ValidationError):
        ensure_admin("root", "123")
    assert not get_user_model().objects.exists()
    assert ensure_admin("root", "correct horse battery staple") == "correct horse battery staple"
    assert get_user_model().objects.get(username="root").check_password("correct horse battery staple")


def test_runstack_prints_the_generated_password_only_on_first_start(db, monkeypatch):
    monkeypatch.delenv("LFL_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("LFL_ADMIN_USER", "boss")
    out = io.StringIO()
    command = runstack.Command(stdout=out)
    command.create_admin()
    password = out.getvalue().split("password: ")[1].split()[0]
    assert get_user_model().objects.get(username="boss").check_password(password)
    command.create_admin()
    assert out.getvalue().count("password") == 1


def test_runstack_refuses_a_weak_admin_password(db, monkeypatch):
    monkeypatch.setenv("LFL_ADMIN_PASSWORD", "password")
    with pytest.raises(CommandError, match="LFL_ADMIN_PASSWORD is not accepted"):
        runstack.Command(stdout=io.StringIO()).create_admin()


def test_embedded_redis_answers_with_its_password_only_and_stops_cleanly():
    server = EmbeddedRedis().start()
    process, port = server.process, server.port
    try:
        assert redis.Redis.from_url(server.url).ping()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as anonymous:
            anonymous.sendall(b"PING\r\n")
            assert anonymous.recv(100).startswith(b"-NOAUTH")
    finally:
        server.stop()
    assert process.poll() is not None and server.process is None
    assert port_is_free("127.0.0.1", port)


def test_the_supervisor_gives_up_on_a_child_that_keeps_dying_and_stops_the_rest_with_their_children():
    said = []
    supervisor = Supervisor(env=dict(os.environ), grace=5, say=said.append, max_restarts=2)
    spawner = (  # like a Celery parent whose pool process ignores SIGTERM
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    parent = supervisor.start("spawner", [sys.executable, "-c", spawner])
    assert wait_until(lambda: len(group_members(parent.pid)) == 2, timeout=10)
    supervisor.start("crasher", [sys.executable, "-c", "raise SystemExit(3)"])
    never = StopOnSignals().event
    dead = supervisor.wait(never, poll_seconds=0.05)
    assert dead.name == "crasher" and dead.process.returncode == 3
    assert said.count("crasher exited (code 3); restarting it") == 2  # restarted, up to the limit
    assert dead.why == said[-1] == "crasher died 3 times within a minute; not restarting it again"
    assert supervisor.check() is dead and said[-1] == dead.why  # given up on for good, said once
    supervisor.stop_all()
    assert parent.process.returncode is not None
    assert wait_until(lambda: gone_group(parent.pid), timeout=10), "the spawner's group outlived stop_all"


def test_with_no_restarts_allowed_the_first_death_gives_up():
    said = []
    supervisor = Supervisor(env=dict(os.environ), grace=5, say=said.append, max_restarts=0)
    crasher = supervisor.start("crasher", [sys.executable, "-c", "raise SystemExit(3)"])
    dead = supervisor.wait(StopOnSignals().event, poll_seconds=0.05)
    assert said == [f"started crasher (pid {crasher.pid})", "crasher died once within a minute; not restarting it again"]
    assert dead.why == said[-1] and dead.process is crasher.process
    supervisor.stop_all()


def test_the_supervisor_restarts_a_dead_child_with_its_environment_after_killing_what_it_left():
    said, restarted = [], []
    supervisor = Supervisor(env={**os.environ, "LFL_PART": "stack"}, grace=5, say=said.append)
    spawner = (  # like a Celery parent with a pool process that outlives it and ignores SIGTERM
        "import os, subprocess, sys, time\n"
        "assert os.environ['LFL_PART'] == 'stack' and os.environ['LFL_EXTRA'] == 'child'\n"
        "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    child = supervisor.start("spawner", [sys.executable, "-c", spawner], {"LFL_EXTRA": "child"},
                             after_restart=lambda: restarted.append(child.pid))
    try:
        assert wait_until(lambda: len(group_members(child.pid)) == 2, timeout=20)
        first, [orphan] = child.pid, [pid for pid in group_members(child.pid) if pid != child.pid]
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: supervisor.check() is None and restarted, timeout=20), said
        assert restarted == [child.pid] and child.pid != first
        assert said[-2:] == ["spawner exited (code -9); restarting it", f"restarted spawner (pid {child.pid})"]
        assert wait_until(lambda: gone(orphan), timeout=10)  # what the dead one left was killed
        assert wait_until(lambda: len(group_members(child.pid)) == 2, timeout=20)  # the same command, same env
    finally:
        supervisor.stop_all()
    assert wait_until(lambda: gone_group(child.pid), timeout=10)


def gone_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return all(gone(pid) for pid in group_members(pgid))


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def test_stop_on_signals_turns_ctrl_c_into_an_event_and_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)
    with StopOnSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert wait_until(stop.is_set, timeout=5)
    assert signal.getsignal(signal.SIGINT) is before


def test_runstack_refuses_a_port_in_use(db):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"port {port} on 127.0.0.1 is in use"):
            call_command("runstack", port=port)


@pytest.mark.django_db(transaction=True)  # a restarted worker's work is sent again from the database
def test_runstack_restarts_a_dying_child_then_stops_everything_and_says_why(monkeypatch, settings):
    settings.REDIS_URL = ""  # so it starts (and must stop) its embedded Redis
    started = []
    monkeypatch.setattr(runstack, "worker_command", lambda *args: [sys.executable, "-c", "raise SystemExit(5)"])
    monkeypatch.setattr(runstack, "coordinator_command", lambda: SLEEPER)
    monkeypatch.setattr(runstack, "daphne_command", lambda host, port: SLEEPER)
    monkeypatch.setattr(runstack.EmbeddedRedis, "start", record_start(runstack.EmbeddedRedis.start, started))
    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("runstack", port=free_port(), restarts_per_minute=1, stdout=out, stderr=io.StringIO())
    assert str(refused.value) == (
        "celery worker died 2 times within a minute; not restarting it again (last exit code 5); the stack was "
        "stopped. LFL_RESTARTS_PER_MINUTE (1) is how often a part may be restarted within a minute.")
    assert "celery worker exited (code 5); restarting it" in out.getvalue()
    pids = [int(line.split("pid ")[1].split(")")[0]) for line in out.getvalue().splitlines() if "(pid " in line]
    assert len(pids) == 5  # redis, worker, coordinator, daphne, the worker once more
    assert all(gone(pid) for pid in pids)
    assert started[0].process is None  # Redis was stopped


def record_start(start, started):
    def wrapper(server):
        started.append(server)
        return start(server)

    return wrapper


def test_child_env_points_every_process_at_the_same_redis(monkeypatch):
    monkeypatch.delenv("LFL_DEBUG", raising=False)
    env = runstack.child_env("redis://:pw@127.0.0.1:1234/0")
    assert env["REDIS_URL"] == "redis://:pw@127.0.0.1:1234/0" and "LFL_DEBUG" not in env  # DEBUG off
    monkeypatch.setenv("LFL_DEBUG", "1")  # developer mode, asked for
    assert runstack.child_env("redis://x")["LFL_DEBUG"] == "1"


def test_worker_and_daphne_commands(settings):
    command = runstack.worker_command("solo", 2, "worker3")
    assert command[-8:-6] == ["--pool=solo", "--concurrency=2"]
    assert command[-4:] == ["-n", "worker3@%h", "-Q", f"celery,{settings.LFL_EVALUATION_QUEUE}"]  # searches and chunks
    assert runstack.thread_share(2, cores=2) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert runstack.thread_share(3, cores=16)["OMP_NUM_THREADS"] == "5"
    assert runstack.thread_share(4, cores=2)["OMP_NUM_THREADS"] == "1"  # never none
    assert runstack.daphne_command("0.0.0.0", 8123)[-5:] == ["-b", "0.0.0.0", "-p", "8123", "lfl_web.asgi:application"]
    assert subprocess.run([*runstack.daphne_command("127.0.0.1", 1)[:3], "--help"], capture_output=True).returncode == 0


def test_runstack_starts_the_workers_asked_for_each_with_its_share_of_the_cores(db, monkeypatch, settings, tmp_path):
    settings.REDIS_URL = ""
    seen = tmp_path / "workers"
    seen.mkdir()

    def worker(pool, concurrency, name):  # writes the threads it was given, then waits like a worker
        report = seen / name
        return [sys.executable, "-c", f"import os, time; open({str(report)!r}, 'w').write(os.environ['OMP_NUM_THREADS']);"
                                      " time.sleep(60)"]

    monkeypatch.setattr(runstack, "worker_command", worker)
    monkeypatch.setattr(runstack, "coordinator_command", lambda: SLEEPER)
    monkeypatch.setattr(runstack, "daphne_command", lambda host, port: SLEEPER)
    monkeypatch.setattr(runstack.Command, "announce", lambda *args: None)
    monkeypatch.setattr(runstack.os, "cpu_count", lambda: 4)

    def stop_once_both_started():
        try:
            assert wait_until(lambda: len([p for p in seen.iterdir() if p.read_text()]) == 2, timeout=30)
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    helper = threading.Thread(target=stop_once_both_started, daemon=True)
    helper.start()
    out = io.StringIO()
    call_command("runstack", port=free_port(), workers=2, stdout=out, stderr=io.StringIO())
    helper.join(10)
    assert {p.name: p.read_text() for p in seen.iterdir()} == {"worker1": "2", "worker2": "2"}  # 4 cores / 2
    said = out.getvalue()
    assert "started celery worker 1" in said and "started celery worker 2" in said and "started coordinator" in said


def test_runstack_refuses_a_negative_restart_limit(db, monkeypatch):
    monkeypatch.setenv("LFL_RESTARTS_PER_MINUTE", "-1")
    with pytest.raises(CommandError, match="LFL_RESTARTS_PER_MINUTE must be 0 or more, got -1"):
        call_command("runstack", port=free_port())


@pytest.mark.django_db(transaction=True)  # the hook closes stale connections, as after a long wait
def test_a_restarted_worker_among_several_has_its_own_chunks_sent_again_at_once(make_experiment):
    experiment = make_experiment(config=tiny_config(search={"population_size": 6, "generations": 1},
                                                    evaluation={"strategy": "batched", "max_population_chunk": 2}))
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    first, second, _ = dispatch.inline_queue()
    dispatch.inline_queue().clear()
    lease = timezone.now() + timedelta(hours=1)  # leases that would hold for long
    assert Chunk.objects.get(pk=first).claim(host_format("worker2@%h"), lease)
    assert Chunk.objects.get(pk=second).claim(host_format("worker1@%h"), lease)  # alive: keeps its chunk
    out = io.StringIO()
    runstack.Command(stdout=out).resend_lost_work("worker2", "redis://unused", sole=False)
    assert list(dispatch.inline_queue()) == [first]
    assert Chunk.objects.get(pk=first).status == ChunkStatus.PENDING
    assert Chunk.objects.get(pk=second).status == ChunkStatus.RUNNING
    assert out.getvalue() == f"1 chunk(s) held by worker2 before its restart were sent again: [{first}]\n"


def test_runstack_refuses_no_workers(db):
    with pytest.raises(CommandError, match="LFL_WORKERS must be at least 1, got 0"):
        call_command("runstack", port=free_port(), workers=0)
