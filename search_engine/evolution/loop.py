"""`run_search`: the evolutionary symbolic loss search, wired end to end in one process.

It drives the pure steps of `evolution.steps`. Per generation: every candidate is looked up in the
symbolic-equivalence cache (keyed on its canonical SymPy form); new ones go through the evaluator
(rejection screen, then fitness) in chunks of `evaluator.chunk_size`; events are emitted; with
local search mode "top_k" the best few are refined; the next generation is bred; a checkpoint is
written. A stop request is honoured between evaluator calls and, through `interrupt`, every few
steps inside training runs and local searches (the candidates being trained then are dropped);
everything finished until then is kept.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_engine import catalog
from search_engine.config import ExperimentConfig, load_config
from search_engine.evolution import steps
from search_engine.evolution.checkpoint import CheckpointError, SearchState, load, save, write_json_atomic
from search_engine.evolution.events import (
    Event,
    GenerationFinished,
    HallOfFameEntry,
    SearchFinished,
    SearchStarted,
)
from search_engine.evolution.steps import baseline_name, seed_losses
from search_engine.expr.tree import KNOWN_LOSSES
from search_engine.runtime import interrupt
from search_engine.runtime.allocator import keep_freed_memory
from search_engine.stored_config import adopt_stored, as_stored

__all__ = ["SearchResult", "baseline_name", "run_search", "seed_losses", "write_result"]

OnEvent = Callable[[Event], None]
ShouldStop = Callable[[], bool]


@dataclass(frozen=True)
class SearchResult:
    """What a search produced; `to_dict()` is the result.json written by the CLI."""

    config: dict
    status: str  # "completed" or "stopped"
    best: HallOfFameEntry | None
    hall_of_fame: tuple[HallOfFameEntry, ...]
    history: tuple[GenerationFinished, ...]
    totals: dict[str, int]
    baseline_loss: str
    baseline_fitness: float | None
    seconds: float
    plan: dict | None = None  # how candidates were scored (scoring.plan.plan_record): rerun with it to reproduce

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["history"] = [g.to_dict() for g in self.history]
        return {"format": "lfl-search-result", "version": 1, **d}


def run_search(
    config: ExperimentConfig | dict,
    on_event: OnEvent | None = None,
    should_stop: ShouldStop | None = None,
    *,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    evaluator_factory: Callable[..., Any] | None = None,
) -> SearchResult:
    """Run the search described by `config`.

    on_event receives each immutable event; should_stop is polled between evaluator calls and
    every `interrupt.CHECK_EVERY` steps of a training run or local search;
    with checkpoint_path a checkpoint is written after every generation, and with resume=True
    an existing checkpoint there is continued (its configuration must match, except that
    `search.generations` may be raised to extend a finished search).
    """
    from search_engine.tasks.task import load_task  # heavy import, only when a search actually runs

    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    keep_freed_memory()  # training steps reuse warm pages (see search_engine.runtime.allocator)
    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    started = time.perf_counter()
    from search_engine.scoring.plan import make_evaluator, plan_record  # strategy per config.evaluation

    status = "completed"
    with interrupt.watching(stop):  # from the first byte of data on: preparing a search can take a while
        saved, config = _saved_state(config, checkpoint_path, resume)
        try:
            task = load_task(config)
            if evaluator_factory is None:
                evaluator = make_evaluator(task, config, saved_plan=saved.plan if saved else None)
            else:
                evaluator = evaluator_factory(task, config)
            state = saved or _fresh_state(config, task.kind, evaluator)
        except interrupt.Stopped:  # before the first generation: nothing was found, nothing is saved
            return _stopped_while_preparing(config, emit, started)
        state.plan = plan_record(evaluator, task.device)
        emit(SearchStarted(
            config=config.to_dict(), generations=config.search.generations,
            population_size=config.search.population_size, start_generation=state.next_generation,
            baseline_loss=baseline_name(task.kind), baseline_fitness=state.baseline_fitness, plan=state.plan,
        ))
        while not steps.is_finished(state):
            try:
                finished = not stop() and _run_generation(state, evaluator, emit, stop)
            except interrupt.Stopped:  # inside a training run: its unfinished candidates are dropped
                finished = False
            if not finished:
                status = "stopped"
                break
            if not steps.is_finished(state):
                steps.breed(state)
            if checkpoint_path:
                save(Path(checkpoint_path), state)
    best = state.hall_of_fame[0] if state.hall_of_fame else None
    emit(SearchFinished(status=status, generations_completed=len(state.history), best=best, **state.totals))
    return SearchResult(
        config=config.to_dict(), status=status, best=best, hall_of_fame=tuple(state.hall_of_fame),
        history=tuple(state.history), totals=dict(state.totals), baseline_loss=baseline_name(task.kind),
        baseline_fitness=state.baseline_fitness, seconds=time.perf_counter() - started, plan=state.plan,
    )


def _stopped_while_preparing(config: ExperimentConfig, emit: OnEvent, started: float) -> SearchResult:
    """The result of a search stopped while its data, plan or baseline were being prepared."""
    totals = {"evaluated": 0, "rejected": 0, "cache_hits": 0}
    emit(SearchFinished(status="stopped", generations_completed=0, best=None, **totals))
    kind = catalog.dataset_kind(config.task.dataset, config.task.kind or "classification")
    return SearchResult(
        config=config.to_dict(), status="stopped", best=None, hall_of_fame=(), history=(), totals=totals,
        baseline_loss=baseline_name(kind), baseline_fitness=None, seconds=time.perf_counter() - started,
    )


def _saved_state(config: ExperimentConfig, checkpoint_path, resume: bool) -> tuple[SearchState | None, ExperimentConfig]:
    """The checkpoint to continue, if resuming and one exists (checked against `config`), and the
    configuration to continue it with (`config`, with the fields the checkpoint predates as it ran)."""
    if not (resume and checkpoint_path and Path(checkpoint_path).exists()):
        return None, config
    state = load(Path(checkpoint_path))
    config = adopt_stored(config, state.config)
    # Read the saved configuration as today's code does: sections added since (with their defaults) match.
    check_same_experiment(load_config(as_stored(state.config), check_data=False).to_dict(), config.to_dict())
    state.config = config.to_dict()
    return state, config


def _fresh_state(config: ExperimentConfig, kind: str, evaluator) -> SearchState:
    baseline = evaluator.fitness(KNOWN_LOSSES[baseline_name(kind)])
    return steps.fresh_state(config, kind, baseline.fitness)


# Sections that say how a search runs, not what it computes: a resumed search may change them
# (e.g. continue on a GPU, or with another evaluation strategy; results then agree to float tolerance).
_HOW_SECTIONS = ("evaluation", "device")


def check_same_experiment(saved: dict, current: dict, extendable: tuple[str, str] = ("search", "generations")) -> None:
    """Raise CheckpointError naming the settings that differ, other than `extendable` (the field a
    resume may raise to extend a finished run: each method's generation count) and _HOW_SECTIONS."""
    differ = []
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section), current.get(section)
        if section in _HOW_SECTIONS or a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            differ += [f"{section}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and (section, k) != extendable]
        else:
            differ.append(section)
    if differ:
        raise CheckpointError(
            "the checkpoint was written for a different configuration (" + ", ".join(differ) + " changed); "
            f"only {'.'.join(extendable)}, evaluation and device may change on resume"
        )


def _run_generation(state: SearchState, evaluator, emit: OnEvent, stop: ShouldStop) -> bool:
    """Drive one generation's steps; False if a stop request came before an evaluator call."""
    t0 = time.perf_counter()
    batches = steps.chunks(steps.pending_work(state), evaluator.chunk_size)
    if not batches:  # every candidate is a cache hit: no evaluator call, the events come at once
        _emit_each(emit, steps.apply_outcomes(state, {}))
    for batch in batches:
        if stop():
            return False
        outcomes = evaluator.evaluate([state.population[item.index] for item in batch])
        by_index = dict(zip([item.index for item in batch], outcomes, strict=True))
        _emit_each(emit, steps.apply_outcomes(state, by_index))
    for item in steps.refinement_work(state):
        if stop():
            return False
        refined = evaluator.refine(state.population[item.index])
        _emit_each(emit, steps.apply_refinements(state, {item.index: refined}))
    emit(steps.finish_generation(state, time.perf_counter() - t0))
    return True


def _emit_each(emit: OnEvent, events: list[Event]) -> None:
    for event in events:
        emit(event)


def write_result(result: SearchResult, path: str | Path) -> None:
    """Write result.json atomically."""
    write_json_atomic(Path(path), result.to_dict())
