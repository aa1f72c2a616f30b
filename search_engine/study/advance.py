"""`advance`: a search's steps as far as the known outcomes allow - the one state machine every driver runs.

A generation is opened (the method's proposals), then each of the method's phases in order: the
phase's known outcomes are applied (idempotent: applying the same outcomes again changes nothing,
and events are released in item order), and while some of its work is still out the search waits;
a phase never given work gets it now (`Advance.opened`: groups of items, one evaluator call each).
When every phase is done the generation is finished and the next one bred and opened, until the
method's last generation. Where the outcomes come from - this process (`driver.run_search`) or any
number of workers (the web's chunks) - is the caller's: it answers `known(generation, phase)` and
evaluates what was opened, so every driver gives the same events and history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Known:
    """What the caller knows of one phase's work: the outcomes in (by item index), whether work was
    opened for it, and whether all of that work is in."""

    outcomes: dict[int, Any]
    opened: bool
    complete: bool


@dataclass
class Advance:
    """What one call did: events to emit, work it opened, generations it finished, and the end."""

    events: list = field(default_factory=list)
    opened: list[tuple[int, str, list]] = field(default_factory=list)  # (generation, phase, groups)
    generations_finished: int = 0
    finished: str | None = None  # "completed" when the last generation finished, "stopped" on request
    changed: bool = False


def advance(method, state, known: Callable[[int, str], Known], chunk_size: int, *, stop: bool = False,
            seconds: Callable[[], float] = lambda: 0.0, new_generation: Callable[[], None] = lambda: None) -> Advance:
    """Go through every step of `state` that the outcomes `known(generation, phase)` complete.

    `stop`: end the search after applying what is known ("stopped"). `seconds()` is the finished
    generation's wall-clock time (the caller's clock); `new_generation()` is called when the next
    one starts. Stops when work was opened (the caller evaluates it, then calls again) or at the end.
    """
    out = Advance()
    while out.finished is None and not out.opened:
        generation = method.next_generation(state)
        method.open_generation(state)
        for phase in method.phases:
            phase_known = known(generation, phase)
            before = len(out.events)
            out.events += method.apply(state, phase, phase_known.outcomes)
            out.changed |= len(out.events) > before
            if stop:
                out.finished, out.changed = "stopped", True
                return out
            if phase_known.opened and not phase_known.complete:
                return out
            if not phase_known.opened and (groups := method.work(state, phase, chunk_size)):
                out.opened.append((generation, phase, groups))
                out.changed = True
                return out
        out.events.append(method.finish_generation(state, seconds()))
        out.generations_finished += 1
        out.changed = True
        if method.is_finished(state):
            out.finished = "completed"
            return out
        method.breed(state)
        new_generation()
    return out
