"""Stopping a search inside a long training run, not only between evaluator calls.

`run_search` installs its `should_stop` callable for the duration of the generations
(`watching(should_stop)`); every training loop of the engine - `tasks.training.train`,
`population.training.train_population`, `scoring.local_search.local_search` and `population.local_search.local_search_population` -
calls `check(step)`, which asks the callable every `CHECK_EVERY` steps and raises `Stopped`
once it answers True. The search then drops the interrupted candidates (their training did
not finish, so they have no fitness) and keeps every candidate finished before.

Loading the data, choosing the evaluation plan and training the baseline run inside `watching`
too, and the file loaders call `poll()` every few thousand rows, so a stop requested while a
large dataset is being prepared is honoured within seconds.

Outside `watching` (the CLI's `evaluate`, the meta-test, direct library use) `check` does
nothing, so these functions behave exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

CHECK_EVERY = 10  # training steps between two questions to should_stop

_should_stop: ContextVar[Callable[[], bool] | None] = ContextVar("lfl_should_stop", default=None)


class Stopped(Exception):
    """A stop request arrived while a candidate was being trained."""


def check(step: int) -> None:
    """Raise `Stopped` if a stop was requested (asked only every CHECK_EVERY steps)."""
    if step % CHECK_EVERY:
        return
    should_stop = _should_stop.get()
    if should_stop is not None and should_stop():
        raise Stopped


def poll() -> None:
    """Raise `Stopped` if a stop was requested: for loops whose units are not training steps
    (rows of a file being parsed, columns being converted), each caller choosing how often."""
    should_stop = _should_stop.get()
    if should_stop is not None and should_stop():
        raise Stopped


@contextmanager
def watching(should_stop: Callable[[], bool]) -> Iterator[None]:
    """Make `check` consult `should_stop` inside this block (in this thread / context only)."""
    token = _should_stop.set(should_stop)
    try:
        yield
    finally:
        _should_stop.reset(token)
