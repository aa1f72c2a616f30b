"""`run_search`: any method's search, driven in one process (events, stop, checkpoint, resume).

The method (`study.method.Method`, chosen by `config.method`) says what one generation's work is
and what its outcomes mean; this driver does the rest, once for every method. Per generation:
the method opens it (TaylorGLO asks CMA-ES for its proposals), then for each of its phases the
driver takes the groups of work the phase needs, evaluates them in order (a stop request is
honoured before each, and through `interrupt` every few steps inside training runs), hands the
outcomes back and emits the events they complete; then the generation's summary, the next
generation (GP breeds), a checkpoint. A stop keeps everything finished until then.

The steps are `study.advance`, which a driver with another transport runs as well (the web's
workers: each group is a chunk any worker evaluates, `apply` is idempotent and releases events in
item order, so the history does not depend on which process evaluated what, or when).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search_engine import catalog
from search_engine.config import ExperimentConfig, load_config
from search_engine.evolution.events import Event, SearchFinished, SearchStarted
from search_engine.runtime import interrupt
from search_engine.runtime.allocator import keep_freed_memory
from search_engine.study.advance import Known, advance
from search_engine.study.method import method_named
from search_engine.study.result import SearchResult
from search_engine.study.storage import FileStorage

OnEvent = Callable[[Event], None]
ShouldStop = Callable[[], bool]


def run_search(
    config: ExperimentConfig | dict,
    on_event: OnEvent | None = None,
    should_stop: ShouldStop | None = None,
    *,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    evaluator_factory: Callable[..., Any] | None = None,
) -> SearchResult:
    """Run the search `config` describes with the method it names.

    on_event receives each immutable event; should_stop is polled between evaluator calls and
    every `interrupt.CHECK_EVERY` steps of a training run or local search; with checkpoint_path a
    checkpoint is written after every generation, and with resume=True an existing checkpoint
    there is continued (its configuration must match, except that the method's generation count
    may be raised to extend a finished search, and evaluation and device may change).
    `evaluator_factory(task, config)` replaces the method's evaluator (tests).
    """
    from search_engine.tasks.task import load_task  # heavy import, only when a search actually runs

    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    method = method_named(config.method)
    config = method.settings(config)
    keep_freed_memory()  # training steps reuse warm pages (see search_engine.runtime.allocator)
    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    started, status = time.perf_counter(), "completed"
    storage = FileStorage(checkpoint_path, method) if checkpoint_path else None
    with interrupt.watching(stop):  # from the first byte of data on: preparing a search can take a while
        saved, config = storage.resume(config) if storage and resume else (None, config)
        try:
            task = load_task(config)
            evaluator = (evaluator_factory(task, config) if evaluator_factory else
                         method.make_evaluator(task, config, saved_plan=saved.plan if saved else None))
            state = saved or method.fresh_state(config, task.kind, method.baseline_fitness(task, config, evaluator))
        except interrupt.Stopped:  # before the first generation: nothing was found, nothing is saved
            return stopped_while_preparing(config, emit, started)
        state.plan = method.plan_record(evaluator, task.device)
        emit(search_started(method, config, state, task.kind))
        try:
            status = _drive(method, state, evaluator, emit, stop, storage)
        except interrupt.Stopped:  # inside a training run: its unfinished work is dropped
            status = "stopped"
    return finish(state, status, config, task.kind, emit, started)


def search_started(method, config: ExperimentConfig, state, kind: str) -> SearchStarted:
    return SearchStarted(
        config=config.to_dict(), generations=method.generations(config),
        population_size=method.population_size(config), start_generation=method.next_generation(state),
        baseline_loss=catalog.baseline_name(kind), baseline_fitness=state.baseline_fitness, plan=state.plan,
    )


def _drive(method, state, evaluator, emit: OnEvent, stop: ShouldStop, storage: FileStorage | None) -> str:
    """`advance` with this process as the transport: each opened group evaluated in order (a stop
    request honoured before each), the search advanced after each; a checkpoint after every
    generation. Returns "completed" or "stopped"."""
    outcomes: dict[tuple[int, str], dict] = {}
    groups: dict[tuple[int, str], int] = {}  # opened: how many groups, and how many are in
    done: dict[tuple[int, str], int] = {}
    queue: list[tuple[tuple[int, str], list]] = []
    clock = {"start": time.perf_counter()}

    def known(generation: int, phase: str) -> Known:
        key = (generation, phase)
        return Known(outcomes.get(key, {}), key in groups, done.get(key, 0) == groups.get(key))

    def restart_clock() -> None:
        clock["start"] = time.perf_counter()

    if method.is_finished(state):
        return "completed"
    while True:
        step = advance(method, state, known, getattr(evaluator, "chunk_size", 1),
                       seconds=lambda: time.perf_counter() - clock["start"], new_generation=restart_clock)
        for event in step.events:
            emit(event)
        if step.generations_finished and storage:
            storage.save(state)
        if step.finished:
            return step.finished
        for generation, phase, opened in step.opened:
            groups[(generation, phase)] = len(opened)
            queue += [((generation, phase), items) for items in opened]
        if stop():
            return "stopped"
        key, items = queue.pop(0)
        results = method.evaluate(evaluator, key[1], items)
        outcomes.setdefault(key, {}).update(
            {method.item_index(item): o for item, o in zip(items, results, strict=True)})
        done[key] = done.get(key, 0) + 1


def finished_event(state, status: str) -> SearchFinished:
    best = state.hall_of_fame[0] if state.hall_of_fame else None
    return SearchFinished(status=status, generations_completed=len(state.history), best=best, **state.totals)


def finish(state, status: str, config: ExperimentConfig, kind: str, emit: OnEvent, started: float) -> SearchResult:
    """The SearchFinished event and the result."""
    event = finished_event(state, status)
    emit(event)
    return SearchResult(
        config=config.to_dict(), status=status, best=event.best,
        hall_of_fame=tuple(state.hall_of_fame), history=tuple(state.history), totals=dict(state.totals),
        baseline_loss=catalog.baseline_name(kind), baseline_fitness=state.baseline_fitness,
        seconds=time.perf_counter() - started, plan=state.plan,
    )


def stopped_while_preparing(config: ExperimentConfig, emit: OnEvent, started: float) -> SearchResult:
    """The result of a search stopped while its data, plan or baseline were being prepared."""
    totals = {"evaluated": 0, "rejected": 0, "cache_hits": 0}
    emit(SearchFinished(status="stopped", generations_completed=0, best=None, **totals))
    kind = catalog.dataset_kind(config.task.dataset, config.task.kind or "classification")
    return SearchResult(
        config=config.to_dict(), status="stopped", best=None, hall_of_fame=(), history=(), totals=totals,
        baseline_loss=catalog.baseline_name(kind), baseline_fitness=None, seconds=time.perf_counter() - started,
    )


