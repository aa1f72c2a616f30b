"""TaylorGLO (Gonzalez & Miikkulainen, GECCO 2021): CMA-ES over a third-order Taylor polynomial loss.

Each generation CMA-ES (the `cmaes` library, seeded from `config.seed`) proposes
`taylorglo.population_size` parameter vectors theta = (c_y, c_f, t2..t7). Each becomes the
polynomial of `taylorglo_poly` - the fixed tree `POLYNOMIAL_EXPRESSION` with theta in its edge
weights - and the whole generation is scored as one population by lfl's evaluator
(`scoring.plan.make_evaluator`; `BatchedEvaluator.fitness_many`): train the task's model from
`config.seed` with the `training` section and measure the validation metric, exactly EvoMAL's
fitness. There is no rejection screen and no local search: TaylorGLO scores every candidate by
training. A candidate whose training diverges gets no fitness (reported as diverged) and CMA-ES
is told the largest finite float, so it ranks last and never breaks the update.

Events, stopping, the checkpoint after every generation and resume follow `evolution.loop.run_search`:
SearchStarted, one CandidateEvaluated per candidate (as its chunk finishes), GenerationFinished
per CMA-ES generation, SearchFinished. A stop request between chunks, or inside a training run
through `runtime.interrupt`, ends the search with status "stopped": finished generations are kept
(and checkpointed), as are the candidates of the interrupted generation scored before it; CMA-ES
is told only whole generations. The hall of fame holds distinct parameter vectors
(`candidate_key`); each entry is an ordinary weighted learned loss.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_engine import catalog
from search_engine.config import ExperimentConfig, load_config
from search_engine.evolution.events import (
    CandidateEvaluated,
    GenerationFinished,
    HallOfFameEntry,
    SearchFinished,
    SearchStarted,
)
from search_engine.evolution.loop import SearchResult, baseline_name
from search_engine.expr.tree import KNOWN_LOSSES
from search_engine.methods import taylorglo_state as checkpoint
from search_engine.methods.taylorglo_poly import (
    POLYNOMIAL_EXPRESSION,
    candidate_key,
    polynomial_latex,
    polynomial_tree,
)
from search_engine.runtime import interrupt
from search_engine.runtime.allocator import keep_freed_memory

#: What CMA-ES is told for a candidate without a fitness: worse than any finite validation metric.
WORST_TOLD = sys.float_info.max


@dataclass(frozen=True)
class TaylorGLO:
    """Strategy object (see `methods.registry`): `run` is `run_taylorglo`."""

    name: str = "taylorglo"

    def run(self, config, on_event=None, should_stop=None, *, checkpoint_path=None, resume=False):
        return run_taylorglo(config, on_event, should_stop, checkpoint_path=checkpoint_path, resume=resume)


TAYLORGLO = TaylorGLO()


def run_taylorglo(
    config: ExperimentConfig | dict,
    on_event: Callable[[Any], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    evaluator_factory: Callable[..., Any] | None = None,
) -> SearchResult:
    """Run TaylorGLO on `config` with `run_search`'s contract (events, stop, checkpoint, resume).

    With resume=True an existing checkpoint at `checkpoint_path` is continued; its configuration
    must match except `taylorglo.generations` (which may grow), `evaluation` and `device`.
    `evaluator_factory(task, config)` replaces `scoring.plan.make_evaluator` (tests).
    """
    from search_engine.scoring.plan import make_evaluator, plan_record  # heavy: only when a search runs
    from search_engine.tasks.task import load_task

    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    if config.method != "taylorglo":
        raise ValueError(f"TaylorGLO runs configurations with method 'taylorglo', got {config.method!r}")
    keep_freed_memory()
    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    started, status = time.perf_counter(), "completed"
    with interrupt.watching(stop):
        saved, config = _saved_state(config, checkpoint_path, resume)
        try:
            task = load_task(config)
            evaluator = (evaluator_factory(task, config) if evaluator_factory else
                         make_evaluator(task, config, saved_plan=saved.plan if saved else None))
            state = saved or _fresh_state(config, task.kind, evaluator)
        except interrupt.Stopped:  # before the first generation: nothing found, nothing saved
            return _stopped_while_preparing(config, emit, started)
        state.plan = plan_record(evaluator, task.device)
        optimizer = checkpoint.restored_optimizer(config, state)
        t = config.taylorglo
        emit(SearchStarted(
            config=config.to_dict(), generations=t.generations, population_size=t.population_size,
            start_generation=state.next_generation, baseline_loss=baseline_name(task.kind),
            baseline_fitness=state.baseline_fitness, plan=state.plan,
        ))
        while state.next_generation < t.generations:
            try:
                finished = not stop() and _run_generation(config, state, optimizer, evaluator, emit, stop)
            except interrupt.Stopped:  # inside a training run: that chunk's candidates are dropped
                finished = False
            if not finished:
                status = "stopped"
                break
            if checkpoint_path:
                checkpoint.save(checkpoint_path, state)
    return _finish(config, state, status, baseline_name(task.kind), emit, started)


def _saved_state(config: ExperimentConfig, checkpoint_path,
                 resume: bool) -> tuple[checkpoint.TaylorGLOState | None, ExperimentConfig]:
    """The checkpoint to continue (or None) and the configuration to continue it with."""
    if not (resume and checkpoint_path and Path(checkpoint_path).exists()):
        return None, config
    state = checkpoint.load(checkpoint_path, config)
    return state, load_config(state.config, check_data=False)


def _fresh_state(config: ExperimentConfig, kind: str, evaluator) -> checkpoint.TaylorGLOState:
    """A new search: the baseline's fitness, trained exactly as every candidate is."""
    baseline = evaluator.fitness(KNOWN_LOSSES[baseline_name(kind)])
    return checkpoint.TaylorGLOState(config=config.to_dict(), baseline_fitness=baseline.fitness)


def _stopped_while_preparing(config: ExperimentConfig, emit, started: float) -> SearchResult:
    """The result of a search stopped while its data, plan or baseline were being prepared."""
    totals = {"evaluated": 0, "rejected": 0, "cache_hits": 0}
    emit(SearchFinished(status="stopped", generations_completed=0, best=None, **totals))
    kind = catalog.dataset_kind(config.task.dataset, config.task.kind or "classification")
    return SearchResult(
        config=config.to_dict(), status="stopped", best=None, hall_of_fame=(), history=(), totals=totals,
        baseline_loss=baseline_name(kind), baseline_fitness=None, seconds=time.perf_counter() - started,
    )


def _finish(config, state, status: str, baseline_loss: str, emit, started: float) -> SearchResult:
    best = state.hall_of_fame[0] if state.hall_of_fame else None
    emit(SearchFinished(status=status, generations_completed=len(state.history), best=best, **state.totals))
    return SearchResult(
        config=config.to_dict(), status=status, best=best, hall_of_fame=tuple(state.hall_of_fame),
        history=tuple(state.history), totals=dict(state.totals), baseline_loss=baseline_loss,
        baseline_fitness=state.baseline_fitness, seconds=time.perf_counter() - started, plan=state.plan,
    )


# ------------------------------------------------------------------ one CMA-ES generation


def _run_generation(config, state, optimizer, evaluator, emit, stop) -> bool:
    """Ask, score (in the evaluator's chunks), record, tell; False if a stop request came first."""
    t0, gen = time.perf_counter(), state.next_generation
    proposals = [optimizer.ask() for _ in range(config.taylorglo.population_size)]  # each (8,) float64
    thetas = [tuple(float(v) for v in x) for x in proposals]
    losses = [polynomial_tree(theta) for theta in thetas]  # (tree, weights); one tree for all
    fitnesses: list[float | None] = []
    chunk = max(1, getattr(evaluator, "chunk_size", 1))
    for start in range(0, len(losses), chunk):
        if stop():
            return False
        for i, outcome in enumerate(_score(evaluator, losses[start : start + chunk]), start):
            _record_candidate(config, state, gen, i, thetas[i], losses[i], outcome, emit)
            fitnesses.append(outcome.fitness)
    told = [WORST_TOLD if f is None else f for f in fitnesses]
    optimizer.tell(list(zip(proposals, told, strict=True)))
    state.rounds.append({"solutions": [list(theta) for theta in thetas], "told": told})
    summary = _summarize(gen, thetas, fitnesses, state, time.perf_counter() - t0)
    state.history.append(summary)
    emit(summary)
    return True


def _score(evaluator, losses: Sequence[tuple]) -> list:
    """Outcomes of (tree, weights) pairs: one population program where the evaluator has one."""
    trees, weights = [t for t, _ in losses], [w for _, w in losses]
    if hasattr(evaluator, "fitness_many"):
        return evaluator.fitness_many(trees, weights)
    return [evaluator.fitness(t, w) for t, w in losses]  # a sequential evaluator


def _record_candidate(config, state, gen: int, index: int, theta, loss, outcome, emit) -> None:
    tree, weights = loss
    key, latex = candidate_key(theta), polynomial_latex(theta)
    state.totals["evaluated"] += 1
    state.totals["rejected"] += int(not outcome.ok)
    if outcome.ok:
        _enter_hall(state, HallOfFameEntry(POLYNOMIAL_EXPRESSION, key, latex, outcome.fitness, tree.size(), gen,
                                           weights), config.search.hall_of_fame_size)
    emit(CandidateEvaluated(
        generation=gen, index=index, expression=POLYNOMIAL_EXPRESSION, canonical_key=key, latex=latex,
        fitness=outcome.fitness, rejection_reason=outcome.reason, cache_hit=False, weights=weights,
    ))


def _enter_hall(state, entry: HallOfFameEntry, size: int) -> None:
    """Insert (or replace, same key) an entry; keep the `size` best, earlier generations first on ties."""
    hall = [h for h in state.hall_of_fame if h.canonical_key != entry.canonical_key] + [entry]
    hall.sort(key=lambda h: (h.fitness, h.generation))
    state.hall_of_fame = hall[:size]


def _summarize(gen: int, thetas, fitnesses: list, state, seconds: float) -> GenerationFinished:
    scored = [(f, i) for i, f in enumerate(fitnesses) if f is not None]
    values = [f for f, _ in scored]
    best = min(scored)[1] if scored else None
    return GenerationFinished(
        generation=gen,
        best_fitness=min(values) if values else None,
        mean_fitness=statistics.fmean(values) if values else None,
        median_fitness=statistics.median(values) if values else None,
        evaluated=len(fitnesses),
        rejected=len(fitnesses) - len(values),
        cache_hits=0,  # every proposal is a new point of a continuous space
        best_expression=POLYNOMIAL_EXPRESSION if best is not None else None,
        best_latex=polynomial_latex(thetas[best]) if best is not None else None,
        hall_of_fame=tuple(state.hall_of_fame),
        seconds=seconds,
    )
