"""A dead embedded Redis comes back: the supervisor restarts it on the same port with the same
password, and the stack sends it again what it lost (the queued searches), from the database."""

import io
import os
import signal
import subprocess
import sys
import threading

import pytest
import redis
from django.core.management import call_command

from lfl_web.experiments.models import Experiment
from lfl_web.redis_server import EmbeddedRedis, free_port
from lfl_web.stack.management.commands import runstack
from lfl_web.stack.supervisor import Supervisor

from ..polling import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def supervising(supervisor: Supervisor):
    """Run supervisor.wait in a thread; returns (stop event, [what wait returned])."""
    stop, returned = threading.Event(), []
    thread = threading.Thread(target=lambda: returned.append(supervisor.wait(stop, poll_seconds=0.05)), daemon=True)
    thread.start()
    return stop, returned, thread


def test_the_supervisor_restarts_a_killed_redis_on_the_same_port_with_the_same_password():
    server = EmbeddedRedis().start()
    said, restarted = [], []
    supervisor = Supervisor(env=dict(os.environ), say=said.append)
    supervisor.keep_alive("embedded redis", server, after_restart=lambda: restarted.append(server.pid))
    client = redis.Redis.from_url(server.url)  # a client that stays, like the worker's
    stop, returned, thread = supervising(supervisor)
    try:
        client.set("kept", "no")
        first, url = server.pid, server.url
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: restarted, timeout=20), said
        assert restarted == [server.pid] and server.pid != first and server.url == url
        assert client.ping() and client.get("kept") is None  # it reconnected, to a server that kept nothing
        assert said == ["embedded redis exited (code -9); restarting it", f"restarted embedded redis (pid {server.pid})"]
        assert not returned  # the stack goes on
    finally:
        stop.set()
        thread.join(10)
        client.close()
        server.stop()
    assert returned == [None]


class Crasher:
    """A server whose every process exits at once with code 3."""

    def __init__(self):
        self.process = None
        self.restart()

    def restart(self):
        self.process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
        return self


def test_a_server_that_keeps_dying_stops_the_stack_instead_of_restarting_forever():
    said = []
    supervisor = Supervisor(env=dict(os.environ), say=said.append, max_restarts=2)
    crasher = Crasher()
    supervisor.keep_alive("crasher", crasher)
    stop, returned, thread = supervising(supervisor)
    thread.join(20)
    stop.set()
    [dead] = returned
    assert dead.name == "crasher" and dead.process.returncode == 3
    assert said.count("crasher exited (code 3); restarting it") == 2
    assert said[-1] == "crasher died 3 times within a minute; not restarting it again"


def test_a_failed_put_back_is_said_and_the_stack_goes_on():
    server, said = EmbeddedRedis().start(), []
    supervisor = Supervisor(env=dict(os.environ), say=said.append)

    def broken():
        raise RuntimeError("database is locked")

    supervisor.keep_alive("embedded redis", server, after_restart=broken)
    try:
        server.process.kill()
        server.process.wait()
        assert supervisor.revive() is None
        assert said[-1] == "after restarting embedded redis: RuntimeError: database is locked"
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_runstack_sends_the_queued_searches_to_its_restarted_redis_again(make_experiment, monkeypatch, settings):
    settings.REDIS_URL = ""  # so it starts (and keeps alive) its embedded Redis
    queued = make_experiment()
    servers = []
    monkeypatch.setattr(runstack, "worker_command", lambda *args: SLEEPER)
    monkeypatch.setattr(runstack, "coordinator_command", lambda: SLEEPER)  # its sweep would send them too
    monkeypatch.setattr(runstack, "daphne_command", lambda host, port: SLEEPER)
    monkeypatch.setattr(runstack.Command, "announce", lambda *args: None)  # the sleeper serves no port
    real_start = runstack.EmbeddedRedis.start
    monkeypatch.setattr(runstack.EmbeddedRedis, "start", lambda server: servers.append(server) or real_start(server))

    def queue_length() -> int:
        try:
            return redis.Redis.from_url(servers[0].url, socket_timeout=2).llen("celery")  # Celery's default queue
        except redis.exceptions.ConnectionError:
            return -1

    def kill_redis_then_stop():
        try:
            assert wait_until(lambda: servers and servers[0].process and queue_length() == 1, timeout=20)  # at start
            first = servers[0].pid
            os.kill(first, signal.SIGKILL)
            assert wait_until(lambda: servers[0].pid != first and queue_length() == 1, timeout=20)  # after the restart
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C delivers: runstack stops everything

    helper = threading.Thread(target=kill_redis_then_stop, daemon=True)
    helper.start()
    out = io.StringIO()
    call_command("runstack", port=free_port(), stdout=out, stderr=io.StringIO())
    helper.join(10)
    said = out.getvalue()
    assert f"sent 1 unfinished experiment(s) to the worker again: [{queued.pk}]" in said
    assert "embedded redis exited (code -9); restarting it" in said
    assert f"sent 1 queued experiment(s) to the restarted redis again: [{queued.pk}]" in said, said
    assert said.rstrip().endswith("lfl stopped.")
    assert Experiment.objects.get(pk=queued.pk).status == "queued"
