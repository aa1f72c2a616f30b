"""`run_search`: the evolutionary symbolic loss search, wired end to end.

Per generation: every candidate is looked up in the symbolic-equivalence cache (keyed on its
canonical SymPy form); new ones go through the evaluator (rejection screen, then fitness); events
are emitted; the next generation is bred; a checkpoint is written. A stop request is honoured
between evaluator calls and, through `interrupt`, every few steps inside training runs and local
searches (the candidates being trained then are dropped); everything finished until then is kept.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_engine import catalog
from search_engine.config import ExperimentConfig, load_config
from search_engine.evolution import operators as gp
from search_engine.evolution.checkpoint import CheckpointError, SearchState, load, save, write_json_atomic
from search_engine.evolution.events import (
    CandidateEvaluated,
    CandidateRefined,
    Event,
    GenerationFinished,
    HallOfFameEntry,
    SearchFinished,
    SearchStarted,
)
from search_engine.expr.symbolic import canonical_key, to_latex
from search_engine.expr.tree import KNOWN_LOSSES, Node, to_prefix
from search_engine.runtime import interrupt
from search_engine.runtime.allocator import keep_freed_memory
from search_engine.scoring.sequential import Outcome

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


def baseline_name(kind: str) -> str:
    """The loss a learned loss must beat: cross-entropy for classification, squared error otherwise."""
    return catalog.baseline_name(kind)


def seed_losses(kind: str, enabled: bool) -> list[Node]:
    """Known losses placed in the first population so a search starts no worse than the baseline."""
    if not enabled:
        return []
    squared_error = KNOWN_LOSSES[catalog.baseline_name("regression")]
    if kind == "classification":
        return [KNOWN_LOSSES[catalog.baseline_name(kind)], squared_error]
    return [squared_error]


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
        saved = _saved_state(config, checkpoint_path, resume)
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
        while state.next_generation < config.search.generations:
            try:
                fitnesses = None if stop() else _run_generation(config, state, evaluator, emit, stop)
            except interrupt.Stopped:  # inside a training run: its unfinished candidates are dropped
                fitnesses = None
            if fitnesses is None:
                status = "stopped"
                break
            if state.next_generation < config.search.generations:
                _breed(config, state, fitnesses)
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


def _saved_state(config: ExperimentConfig, checkpoint_path, resume: bool) -> SearchState | None:
    """The checkpoint to continue, if resuming and one exists (checked against `config`)."""
    if not (resume and checkpoint_path and Path(checkpoint_path).exists()):
        return None
    state = load(Path(checkpoint_path))
    # Read the saved configuration as today's code does: sections added since (with their defaults) match.
    _check_same_experiment(load_config(state.config, check_data=False).to_dict(), config.to_dict())
    state.config = config.to_dict()
    return state


def _fresh_state(config: ExperimentConfig, kind: str, evaluator) -> SearchState:
    rng = random.Random(config.seed)
    s = config.search
    population = gp.initial_population(
        rng, s.population_size, seeds=seed_losses(kind, s.seed_known_losses),
        min_height=s.init_min_height, max_height=s.init_max_height,
    )
    baseline = evaluator.fitness(KNOWN_LOSSES[baseline_name(kind)])
    return SearchState(
        config=config.to_dict(), next_generation=0, population=population, rng=rng,
        baseline_fitness=baseline.fitness,
    )


# Sections that say how a search runs, not what it computes: a resumed search may change them
# (e.g. continue on a GPU, or with another evaluation strategy; results then agree to float tolerance).
_HOW_SECTIONS = ("evaluation", "device")


def _check_same_experiment(saved: dict, current: dict) -> None:
    """Raise CheckpointError naming the settings that differ, other than search.generations and _HOW_SECTIONS."""
    differ = []
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section), current.get(section)
        if section in _HOW_SECTIONS or a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            differ += [f"{section}.{k}" for k in sorted(set(a) | set(b))
                       if a.get(k) != b.get(k) and (section, k) != ("search", "generations")]
        else:
            differ.append(section)
    if differ:
        raise CheckpointError(
            "the checkpoint was written for a different configuration (" + ", ".join(differ) + " changed); "
            "only search.generations, evaluation and device may change on resume"
        )


def _run_generation(config: ExperimentConfig, state: SearchState, evaluator, emit: OnEvent, stop: ShouldStop) -> list | None:
    """Evaluate the current population and return its fitnesses; None if a stop request came first."""
    t0 = time.perf_counter()
    gen, population = state.next_generation, state.population
    keys = [canonical_key(t) for t in population]
    first_new: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in state.cache and k not in first_new:
            first_new[k] = i
    pending = list(first_new.values())
    outcomes: list[Outcome | None] = [None] * len(population)
    emitted = 0
    for start in range(0, len(pending) + 1, max(1, evaluator.chunk_size)):
        chunk = pending[start : start + evaluator.chunk_size]
        if chunk:
            if stop():
                return None
            for i, outcome in zip(chunk, evaluator.evaluate([population[i] for i in chunk])):
                state.cache[keys[i]] = outcome
        while emitted < len(population) and keys[emitted] in state.cache:
            outcome = state.cache[keys[emitted]]
            hit = first_new.get(keys[emitted]) != emitted
            _record_candidate(state, gen, emitted, population[emitted], keys[emitted], outcome, hit, emit)
            outcomes[emitted] = outcome
            emitted += 1
    fitnesses = [o.fitness for o in outcomes]
    if config.local_search.mode == "top_k":
        if not _refine_top_k(config, state, gen, population, keys, fitnesses, evaluator, emit, stop):
            return None
    summary = _summarize(gen, population, fitnesses, keys, first_new, state, time.perf_counter() - t0)
    state.history.append(summary)
    state.next_generation = gen + 1
    emit(summary)
    return fitnesses


def _record_candidate(state, gen, index, tree, key, outcome: Outcome, hit: bool, emit: OnEvent) -> None:
    state.totals["evaluated"] += 1
    state.totals["rejected"] += int(not outcome.ok)
    state.totals["cache_hits"] += int(hit)
    latex = to_latex(tree)
    if outcome.ok and all(h.canonical_key != key for h in state.hall_of_fame):
        _enter_hall(state, HallOfFameEntry(
            to_prefix(tree), key, latex, outcome.fitness, tree.size(), gen, outcome.weights))
    emit(CandidateEvaluated(
        generation=gen, index=index, expression=to_prefix(tree), canonical_key=key, latex=latex,
        fitness=outcome.fitness, rejection_reason=outcome.reason, cache_hit=hit, weights=outcome.weights,
    ))


def _enter_hall(state: SearchState, entry: HallOfFameEntry) -> None:
    """Insert or replace (same canonical key) an entry; keep the best few, simplest first on ties."""
    hall = [h for h in state.hall_of_fame if h.canonical_key != entry.canonical_key] + [entry]
    hall.sort(key=lambda h: (h.fitness, h.size, h.generation))
    state.hall_of_fame = hall[: _hof_size(state)]


def _refine_top_k(config, state, gen, population, keys, fitnesses, evaluator, emit, stop) -> bool:
    """Mode "top_k": local search on the generation's k best distinct candidates not refined yet.

    The better of the symbolic and the refined outcome is kept (all-ones weights are a valid
    point of the parameter space). Returns False if a stop request came first.
    """
    best: dict[str, int] = {}
    for i in sorted((i for i, f in enumerate(fitnesses) if f is not None), key=lambda i: fitnesses[i]):
        best.setdefault(keys[i], i)
    for key, i in list(best.items())[: config.local_search.top_k]:
        before = state.cache[key]
        if before.weights is not None:
            continue
        if stop():
            return False
        refined = evaluator.refine(population[i])
        kept = refined if refined.ok and refined.fitness <= before.fitness else before
        state.cache[key] = kept
        for j, k in enumerate(keys):
            if k == key:
                fitnesses[j] = kept.fitness
        if kept is refined:
            _enter_hall(state, HallOfFameEntry(
                to_prefix(population[i]), key, to_latex(population[i]), refined.fitness,
                population[i].size(), gen, refined.weights))
        emit(CandidateRefined(
            generation=gen, index=i, expression=to_prefix(population[i]), canonical_key=key,
            symbolic_fitness=before.fitness, fitness=refined.fitness, weights=refined.weights or (),
        ))
    return True


def _hof_size(state: SearchState) -> int:
    return state.config["search"]["hall_of_fame_size"]


def _summarize(gen, population, fitnesses, keys, first_new, state, seconds) -> GenerationFinished:
    scored = [(f, i) for i, f in enumerate(fitnesses) if f is not None]
    values = [f for f, _ in scored]
    best_i = min(scored)[1] if scored else None
    return GenerationFinished(
        generation=gen,
        best_fitness=min(values) if values else None,
        mean_fitness=statistics.fmean(values) if values else None,
        median_fitness=statistics.median(values) if values else None,
        evaluated=len(population),
        rejected=sum(f is None for f in fitnesses),
        cache_hits=sum(first_new.get(k) != i for i, k in enumerate(keys)),
        best_expression=to_prefix(population[best_i]) if best_i is not None else None,
        best_latex=to_latex(population[best_i]) if best_i is not None else None,
        hall_of_fame=tuple(state.hall_of_fame),
        seconds=seconds,
    )


def _breed(config: ExperimentConfig, state: SearchState, fitnesses: list) -> None:
    s = config.search
    state.population = gp.next_generation(
        state.rng, state.population, fitnesses,
        crossover_rate=s.crossover_rate, mutation_rate=s.mutation_rate, tournament_size=s.tournament_size,
        elitism_rate=s.elitism_rate, max_height=s.max_height,
        mutation_min_height=s.mutation_min_height, mutation_max_height=s.mutation_max_height,
    )


def write_result(result: SearchResult, path: str | Path) -> None:
    """Write result.json atomically."""
    write_json_atomic(Path(path), result.to_dict())
