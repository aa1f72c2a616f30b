"""Run a few long-lived processes together and keep every one alive; a signal stops all cleanly.

Each child gets its own process group, so the terminal's Ctrl-C reaches only the supervisor, which
then stops the children in order, and so a child's own children (Celery's pool) are stopped too.
A part that dies is started again (a command is run again; a server such as the embedded Redis
restarts itself at the same address, so its clients reconnect), and its `after_restart` puts back
what it lost. One restart limit holds for every part: a part that dies more than `max_restarts`
times within a minute is not started again, and the supervisor says why and gives up (the caller
stops the rest): a part that cannot stay up is broken, not unlucky.
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

#: The span, in seconds, over which a part's restarts are counted against the limit.
RESTART_WINDOW = 60.0


class Restartable(Protocol):
    """A part with its own process that can be started again (a Child, an EmbeddedRedis)."""

    process: subprocess.Popen | None

    def restart(self) -> object: ...


@dataclass
class Child:
    """A command the supervisor runs; `restart` runs it again with the same environment."""

    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def spawn(self) -> Child:
        self.process = subprocess.Popen(self.command, env=self.env, start_new_session=True)
        return self

    def restart(self) -> Child:
        """Run the command again, after killing what the dead process left in its group: a Celery
        worker's pool processes outlive a killed parent and would go on computing for nobody."""
        kill_group(self.pid)
        return self.spawn()


@dataclass
class GaveUp:
    """A part the supervisor stopped restarting, and why (one sentence, for the operator)."""

    name: str
    process: subprocess.Popen
    why: str


@dataclass
class KeptAlive:
    name: str
    part: Restartable
    after_restart: Callable[[], None]
    deaths: list[float] = field(default_factory=list)  # when it died (monotonic), for the restart limit

    def count_death(self, now: float) -> int:
        """Record a death at `now`; how many fall within the last RESTART_WINDOW seconds."""
        self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW] + [now]
        return len(self.deaths)


class Supervisor:
    """Starts commands, restarts whatever dies (at most `max_restarts` times a minute per part),
    stops them all (SIGTERM, then SIGKILL to the whole group)."""

    def __init__(self, env: dict[str, str], grace: float = 15.0, say: Callable[[str], None] = print,
                 max_restarts: int = 5):
        self.env = env
        self.grace = grace
        self.say = say
        self.max_restarts = max_restarts
        self.children: list[Child] = []
        self.kept_alive: list[KeptAlive] = []
        self.gave_up: GaveUp | None = None

    def start(self, name: str, command: list[str], extra_env: dict[str, str] | None = None,
              after_restart: Callable[[], None] = lambda: None) -> Child:
        """Run `command` and keep it running: restarted when it dies, then `after_restart` is called."""
        child = Child(name, command, {**self.env, **(extra_env or {})}).spawn()
        self.children.append(child)
        self.keep_alive(name, child, after_restart)
        self.say(f"started {name} (pid {child.pid})")
        return child

    def keep_alive(self, name: str, part: Restartable, after_restart: Callable[[], None] = lambda: None) -> None:
        """Restart `part` whenever `check` finds its process gone, then call `after_restart`."""
        self.kept_alive.append(KeptAlive(name, part, after_restart))

    def wait(self, stop: threading.Event, poll_seconds: float = 0.5) -> GaveUp | None:
        """Keep every part alive until `stop` is set (returns None) or a part is given up on (returns it)."""
        while not stop.wait(poll_seconds):
            if self.check():
                return self.gave_up
        return None

    def check(self) -> GaveUp | None:
        """Restart every part that died; the part given up on, if any (once given up, for good)."""
        if self.gave_up is None:
            self.gave_up = self.revive()
        return self.gave_up

    def revive(self) -> GaveUp | None:
        """Restart every kept-alive part that died; returns one that may not or could not be restarted."""
        for kept in self.kept_alive:
            process = kept.part.process
            if process is None or process.poll() is None:
                continue
            deaths = kept.count_death(time.monotonic())
            if deaths > self.max_restarts:
                times = "once" if deaths == 1 else f"{deaths} times"
                why = f"{kept.name} died {times} within a minute; not restarting it again"
                self.say(why)
                return GaveUp(kept.name, process, why)
            self.say(f"{kept.name} exited (code {process.returncode}); restarting it")
            try:
                kept.part.restart()
            except Exception as exc:  # e.g. RedisStartError: the stack cannot go on without it
                why = f"{kept.name} could not be restarted: {exc}"
                self.say(why)
                return GaveUp(kept.name, process, why)
            self.say(f"restarted {kept.name} (pid {kept.part.process.pid})")
            self._after_restart(kept)
        return None

    def _after_restart(self, kept: KeptAlive) -> None:
        try:
            kept.after_restart()
        except Exception as exc:  # the part is back; what could not be put back is said, not fatal
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
