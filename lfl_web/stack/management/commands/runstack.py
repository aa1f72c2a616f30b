"""`python manage.py runstack` (what `make run` runs): the whole web stack on one machine.

Migrates the database, starts an embedded Redis unless REDIS_URL is set, creates the first admin,
then runs daphne (HTTP + websockets) and a Celery worker until Ctrl-C or SIGTERM. If either dies,
everything stops and the command exits non-zero. If the embedded Redis dies, it is started again on
the same port with the same password (the worker and daphne reconnect), and the queued searches it
lost are sent to it again from the database. LFL_WORKERS=N starts N evaluation workers, each with
1/N of the cores; they share every search's chunks. A coordinator (`manage.py coordinate`) sends
again what a lost worker or a restarted Redis lost.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from lfl_web.redis_server import EmbeddedRedis, RedisStartError
from lfl_web.stack.admin_account import ensure_admin
from lfl_web.stack.supervisor import StopOnSignals, Supervisor, port_is_free, wait_for_port

POOLS = ("prefork", "solo", "threads")


def worker_command(pool: str, concurrency: int, name: str = "worker1") -> list[str]:
    """A Celery worker taking searches (the default queue) and chunks of searches (the evaluation queue)."""
    # --quiet drops the worker's start-up banner, which would otherwise bury the address and the
    # admin password printed just before it; the worker's log lines still show.
    return [
        sys.executable, "-m", "celery", "-A", "lfl_web", "--quiet", "worker", "--loglevel=INFO",
        f"--pool={pool}", f"--concurrency={concurrency}", "--without-gossip", "--without-mingle",
        "-n", f"{name}@%h", "-Q", f"celery,{settings.LFL_EVALUATION_QUEUE}",
    ]


def coordinator_command() -> list[str]:
    return [sys.executable, "manage.py", "coordinate"]


def thread_share(workers: int, cores: int | None = None) -> dict[str, str]:
    """Each of `workers` worker processes gets an equal share of the machine's cores for its math."""
    threads = str(max(1, (cores or os.cpu_count() or 1) // workers))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def daphne_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "lfl_web.asgi:application"]


def child_env(redis_url: str) -> dict[str, str]:
    # DEBUG stays as the settings say (off): the stack may be reached by others; LFL_DEBUG=1 opts in.
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    env.setdefault("DJANGO_SETTINGS_MODULE", "lfl_web.settings")
    return env


def check_options(host: str, port: int, pool: str, concurrency: int, workers: int = 1) -> None:
    if workers < 1:
        raise CommandError(f"LFL_WORKERS must be at least 1, got {workers}")
    if pool not in POOLS:
        raise CommandError(f"LFL_WORKER_POOL must be one of {', '.join(POOLS)}, got {pool!r}")
    if concurrency < 1:
        raise CommandError(f"the worker concurrency must be at least 1, got {concurrency}")
    if not port_is_free(host, port):
        raise CommandError(f"port {port} on {host} is in use; pick another with LFL_PORT=NNNN or --port")


class Command(BaseCommand):
    help = "Run lfl locally (migrations, Redis, daphne, Celery workers, the coordinator) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("LFL_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=os.environ.get("LFL_PORT", "8000"))
        parser.add_argument("--pool", choices=POOLS, default=os.environ.get("LFL_WORKER_POOL", "prefork"))
        parser.add_argument("--concurrency", type=int, default=os.environ.get("LFL_WORKER_CONCURRENCY", "1"))
        parser.add_argument("--workers", type=int, default=os.environ.get("LFL_WORKERS", "1"),
                            help="evaluation worker processes, each with an equal share of the cores")

    def handle(self, *args, host, port, pool, concurrency, workers, **options):
        check_options(host, port, pool, concurrency, workers)
        call_command("migrate", interactive=False, verbosity=0)
        self.create_admin()
        dead = self.supervise(host, port, pool, concurrency, workers)
        if dead:
            raise CommandError(f"{dead.name} exited unexpectedly (code {dead.process.returncode}); the stack was stopped")
        self.stdout.write("lfl stopped.")

    def supervise(self, host: str, port: int, pool: str, concurrency: int, workers: int = 1):
        """Run until Ctrl-C/SIGTERM (returns None) or until a child dies (returns it); stops everything."""
        with StopOnSignals() as stop, ExitStack() as cleanup:
            redis_url, embedded = self.redis_url(cleanup)
            supervisor = Supervisor(child_env(redis_url), say=self.stdout.write)
            cleanup.callback(supervisor.stop_all)
            for i in range(1, workers + 1):
                name = "celery worker" if workers == 1 else f"celery worker {i}"
                supervisor.start(name, worker_command(pool, concurrency, f"worker{i}"), thread_share(workers))
            supervisor.start("coordinator", coordinator_command())
            supervisor.start("daphne", daphne_command(host, port))
            if embedded:
                self.requeue(redis_url)
                supervisor.keep_alive("embedded redis", embedded, after_restart=lambda: self.resend_queued(redis_url))
            self.announce(host, port, lambda: not stop.is_set() and supervisor.first_exited() is None)
            return supervisor.wait(stop)

    def create_admin(self) -> None:
        username = os.environ.get("LFL_ADMIN_USER") or "admin"
        given = os.environ.get("LFL_ADMIN_PASSWORD") or None
        try:
            password = ensure_admin(username, given)
        except ValidationError as exc:
            raise CommandError(f"LFL_ADMIN_PASSWORD is not accepted: {' '.join(exc.messages)}") from None
        if password and given:
            self.stdout.write(f"Created the admin account {username!r} with the password from LFL_ADMIN_PASSWORD.")
        elif password:
            self.stdout.write(self.style.WARNING(
                f"Created the admin account {username!r} with password: {password}\n"
                "(shown only this once; change it in the admin)"
            ))

    def redis_url(self, cleanup: ExitStack) -> tuple[str, EmbeddedRedis | None]:
        """The Redis to use, and the embedded server started for it (None for REDIS_URL's)."""
        if settings.REDIS_URL:
            return settings.REDIS_URL, None
        server = EmbeddedRedis()
        try:
            server.start()
        except RedisStartError as exc:
            raise CommandError(str(exc)) from None
        cleanup.callback(server.stop)
        self.stdout.write(f"started embedded redis (pid {server.pid}) on port {server.port}")
        return server.url, server

    def requeue(self, redis_url: str) -> None:
        from lfl_web.experiments.coordinator import release_every_lease
        from lfl_web.experiments.services import requeue_unfinished
        from lfl_web.experiments.transfers import resend_unfinished

        held = release_every_lease()  # their workers stopped with the previous run of the stack
        if held:
            self.stdout.write(f"{len(held)} chunk(s) held by the previous run's workers will be sent again: {held}")
        pks = requeue_unfinished(broker_url=redis_url)
        if pks:
            self.stdout.write(f"sent {len(pks)} unfinished experiment(s) to the worker again: {pks}")
        runs = resend_unfinished(broker_url=redis_url, running_too=True)
        if runs:
            self.stdout.write(f"sent {len(runs)} unfinished transfer(s) to the worker again: {runs}")

    def resend_queued(self, redis_url: str) -> None:
        """The restarted Redis is empty: send the queued searches again (the running ones go on)."""
        from lfl_web.experiments.services import requeue_queued

        close_old_connections()  # this process has been waiting, not serving requests
        from lfl_web.experiments.transfers import resend_unfinished

        pks = requeue_queued(broker_url=redis_url)
        self.stdout.write(f"sent {len(pks)} queued experiment(s) to the restarted redis again: {pks}")
        runs = resend_unfinished(broker_url=redis_url, running_too=False)
        if runs:
            self.stdout.write(f"sent {len(runs)} queued transfer(s) to the restarted redis again: {runs}")

    def announce(self, host: str, port: int, alive) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        if wait_for_port(shown, port, timeout=60, alive=alive):
            self.stdout.write(self.style.SUCCESS(f"lfl is running: open http://{shown}:{port}/  (Ctrl-C stops it)"))
