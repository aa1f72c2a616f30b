"""Run a few long-lived processes together: if one dies, all stop; a signal stops all cleanly.

Each child gets its own process group, so the terminal's Ctrl-C reaches only the supervisor, which
then stops the children in order, and so a child's own children (Celery's pool) are stopped too.
A server the others only talk to (the embedded Redis) is instead restarted when it dies: its
clients reconnect to the same address, and `after_restart` puts back what it lost.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Child:
    name: str
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid


class Restartable(Protocol):
    """A server with its own process that can start again at the same address (EmbeddedRedis)."""

    process: subprocess.Popen | None

    def restart(self) -> object: ...


@dataclass
class KeptAlive:
    name: str
    server: Restartable
    after_restart: Callable[[], None]
    restarts: list[float] = field(default_factory=list)  # when, for the restart limit


class Supervisor:
    """Starts commands, watches them, stops them (SIGTERM, then SIGKILL to the whole group); restarts
    the servers it keeps alive, at most `max_restarts` times a minute each."""

    def __init__(self, env: dict[str, str], grace: float = 15.0, say: Callable[[str], None] = print,
                 max_restarts: int = 5):
        self.env = env
        self.grace = grace
        self.say = say
        self.max_restarts = max_restarts
        self.children: list[Child] = []
        self.kept_alive: list[KeptAlive] = []

    def start(self, name: str, command: list[str], extra_env: dict[str, str] | None = None) -> Child:
        process = subprocess.Popen(command, env={**self.env, **(extra_env or {})}, start_new_session=True)
        child = Child(name, process)
        self.children.append(child)
        self.say(f"started {name} (pid {child.pid})")
        return child

    def keep_alive(self, name: str, server: Restartable, after_restart: Callable[[], None] = lambda: None) -> None:
        """Restart `server` whenever wait() finds its process gone, then call `after_restart`."""
        self.kept_alive.append(KeptAlive(name, server, after_restart))

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def wait(self, stop: threading.Event, poll_seconds: float = 0.5) -> Child | None:
        """Block until `stop` is set (returns None), or a child exits or a kept-alive server cannot
        be restarted (returns it)."""
        while not stop.wait(poll_seconds):
            dead = self.first_exited() or self.revive()
            if dead:
                return dead
        return None

    def revive(self) -> Child | None:
        """Restart every kept-alive server that died; returns one that could not be restarted."""
        for kept in self.kept_alive:
            process = kept.server.process
            if process is None or process.poll() is None:
                continue
            now = time.monotonic()
            kept.restarts = [t for t in kept.restarts if now - t < 60] + [now]
            if len(kept.restarts) > self.max_restarts:
                self.say(f"{kept.name} died {len(kept.restarts)} times within a minute; not restarting it again")
                return Child(kept.name, process)
            self.say(f"{kept.name} exited (code {process.returncode}); restarting it")
            try:
                kept.server.restart()
            except Exception as exc:  # e.g. RedisStartError: the stack cannot go on without it
                self.say(f"{kept.name} could not be restarted: {exc}")
                return Child(kept.name, process)
            self.say(f"restarted {kept.name} (pid {kept.server.process.pid})")
            self._after_restart(kept)
        return None

    def _after_restart(self, kept: KeptAlive) -> None:
        try:
            kept.after_restart()
        except Exception as exc:  # the server is back; what could not be put back is said, not fatal
            self.say(f"after restarting {kept.name}: {type(exc).__name__}: {exc}")

    def stop_all(self) -> None:
        """Stop children in reverse start order; whatever outlives the grace period is killed."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + self.grace
        for child in reversed(self.children):
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {self.grace:g} s; killing it")
            kill_group(child.pid)
            child.process.wait()


def kill_group(pgid: int) -> None:
    """SIGKILL whatever is left in a child's process group (e.g. a worker's pool processes)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class StopOnSignals:
    """Within the block, SIGINT and SIGTERM set `event` instead of raising; old handlers come back after."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.event = threading.Event()
        self._previous = {}

    def __enter__(self) -> threading.Event:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, lambda *_: self.event.set())
        return self.event

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, timeout: float, alive: Callable[[], bool]) -> bool:
    """True once something accepts connections on host:port; False on timeout or when `alive()` fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False
