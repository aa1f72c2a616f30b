"""`python manage.py runstack` (what `make run` runs): the whole web stack on one machine.

Migrates the database, starts an embedded Redis unless REDIS_URL is set, creates the first admin,
then runs daphne (HTTP + websockets), a Celery worker and the coordinator until Ctrl-C or SIGTERM.
Every part that dies is started again, at most LFL_RESTARTS_PER_MINUTE times a minute each; one
that dies more often stops everything, and the command exits non-zero saying which. The embedded
Redis comes back on the same port with the same password (the worker and daphne reconnect), and the
queued searches it lost are sent to it again from the database. A restarted worker's work is sent
again at once (see `resend_lost_work`), and dashboards reconnect to a restarted daphne by
themselves. LFL_WORKERS=N starts N evaluation workers, each with 1/N of the cores; they share every
search's chunks. The coordinator (`manage.py coordinate`) sends again what a lost worker or a
restarted Redis lost.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack

from celery.utils.nodenames import host_format
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


def check_options(host: str, port: int, pool: str, concurrency: int, workers: int = 1,
                  restarts_per_minute: int = 5) -> None:
    if restarts_per_minute < 0:
        raise CommandError(f"LFL_RESTARTS_PER_MINUTE must be 0 or more, got {restarts_per_minute}")
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
        parser.add_argument("--restarts-per-minute", type=int,
                            default=os.environ.get("LFL_RESTARTS_PER_MINUTE", "5"),
                            help="how often each part may be restarted within a minute before the stack stops")

    def handle(self, *args, host, port, pool, concurrency, workers, restarts_per_minute, **options):
        check_options(host, port, pool, concurrency, workers, restarts_per_minute)
        call_command("migrate", interactive=False, verbosity=0)
        self.create_admin()
        gave_up = self.supervise(host, port, pool, concurrency, workers, restarts_per_minute)
        if gave_up:
            raise CommandError(f"{gave_up.why} (last exit code {gave_up.process.returncode}); the stack was "
                               f"stopped. LFL_RESTARTS_PER_MINUTE ({restarts_per_minute}) is how often a part "
                               "may be restarted within a minute.")
        self.stdout.write("lfl stopped.")

    def supervise(self, host: str, port: int, pool: str, concurrency: int, workers: int = 1,
                  restarts_per_minute: int = 5):
        """Run until Ctrl-C/SIGTERM (returns None) or until a part is given up on (returns it); stops everything."""
        with StopOnSignals() as stop, ExitStack() as cleanup:
            redis_url, embedded = self.redis_url(cleanup)
            supervisor = Supervisor(child_env(redis_url), say=self.stdout.write, max_restarts=restarts_per_minute)
            cleanup.callback(supervisor.stop_all)
            sole = embedded is not None and workers == 1
            for i in range(1, workers + 1):
                name, node = ("celery worker" if workers == 1 else f"celery worker {i}"), f"worker{i}"
                supervisor.start(name, worker_command(pool, concurrency, node), thread_share(workers),
                                 after_restart=lambda node=node: self.resend_lost_work(node, redis_url, sole=sole))
            supervisor.start("coordinator", coordinator_command())
            supervisor.start("daphne", daphne_command(host, port))
            if embedded:
                self.requeue(redis_url)
                supervisor.keep_alive("embedded redis", embedded, after_restart=lambda: self.resend_queued(redis_url))
            self.announce(host, port, lambda: not stop.is_set() and supervisor.check() is None)
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

    def requeue(self, redis_url: str, holders: str = "the previous run's workers") -> None:
        """Send everything unfinished to the workers again (the stack's broker kept none of it, or
        `holders`, every worker there was, were lost with it)."""
        from lfl_web.experiments.fanout.coordinator import release_every_lease
        from lfl_web.experiments.services import requeue_unfinished, resend_unfinished_transfers

        held = release_every_lease()  # their workers are gone: none of them can still be evaluating
        if held:
            self.stdout.write(f"{len(held)} chunk(s) held by {holders} will be sent again: {held}")
        pks = requeue_unfinished(broker_url=redis_url)
        if pks:
            self.stdout.write(f"sent {len(pks)} unfinished experiment(s) to the worker again: {pks}")
        runs = resend_unfinished_transfers(broker_url=redis_url, running_too=True)
        if runs:
            self.stdout.write(f"sent {len(runs)} unfinished transfer(s) to the worker again: {runs}")

    def resend_queued(self, redis_url: str) -> None:
        """The restarted Redis is empty: send the queued searches again (the running ones go on)."""
        from lfl_web.experiments.services import requeue_queued, resend_unfinished_transfers

        close_old_connections()  # this process has been waiting, not serving requests

        pks = requeue_queued(broker_url=redis_url)
        self.stdout.write(f"sent {len(pks)} queued experiment(s) to the restarted redis again: {pks}")
        runs = resend_unfinished_transfers(broker_url=redis_url, running_too=False)
        if runs:
            self.stdout.write(f"sent {len(runs)} queued transfer(s) to the restarted redis again: {runs}")

    def resend_lost_work(self, node: str, redis_url: str, *, sole: bool) -> None:
        """Worker `node` was restarted: what it was doing is sent again now, not when its chunks'
        leases run out. The stack's only worker on its own Redis: everything unfinished, as at start
        (no other worker can hold any of it: ML3 and TaylorGLO searches, meta-tests and transfers
        come back too). One of several workers, or a shared Redis: the chunks it held; a search or
        meta-test it ran in one task is sent again by the next start of the stack."""
        close_old_connections()  # this process has been waiting, not serving requests
        if sole:
            self.requeue(redis_url, holders="the restarted worker")
            return
        from lfl_web.experiments.fanout.coordinator import release_held_by
        from lfl_web.experiments.fanout.dispatch import send_chunks

        # The restarted worker has the same name, but it is still starting up (seconds) and cannot
        # have claimed a chunk yet; even so, a chunk evaluated twice changes nothing stored.
        held = release_held_by(host_format(f"{node}@%h"))
        if held:
            send_chunks(held, broker_url=redis_url)
            self.stdout.write(f"{len(held)} chunk(s) held by {node} before its restart were sent again: {held}")

    def announce(self, host: str, port: int, alive) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        if wait_for_port(shown, port, timeout=60, alive=alive):
            self.stdout.write(self.style.SUCCESS(f"lfl is running: open http://{shown}:{port}/  (Ctrl-C stops it)"))
