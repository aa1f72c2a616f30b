"""The evolutionary search as pure steps over a serialisable `SearchState`.

A driver runs one generation like this (`loop.run_search` is the single-process driver; a web
driver may hand the chunks to as many workers as it has, in any order):

    items = pending_work(state)                     # the new canonical forms, first occurrences
    for chunk in chunks(items, evaluator.chunk_size):
        outcomes = evaluator.evaluate([item.tree for item in chunk])
        events += apply_outcomes(state, {item.index: o for item, o in zip(chunk, outcomes)})
    events += apply_outcomes(state, {})             # when there was no work: releases the cache hits
    for item in refinement_work(state):             # local_search.mode "top_k" only
        events += apply_refinements(state, {item.index: evaluator.refine(item.tree)})
    events.append(finish_generation(state, seconds))
    if not is_finished(state):
        breed(state)

The steps do no I/O, read no clock and call no evaluator: the driver does the evaluator work
(including the baseline's fitness for `fresh_state`) and passes its outcomes in. Outcomes enter
the cache keyed by canonical form, and events are released only for the prefix of the population
whose outcomes are all known, so events, history and hall of fame depend on the configuration and
the outcomes alone, not on the order or the partition in which chunks come back, nor on how often
the same outcomes are applied. `checkpoint.state_to_dict` between any two steps, then
`state_from_dict`, continues exactly as if the state had never left memory.

One loss, one entry: a candidate's cache key is its canonical form for the task (`task_kind`:
for classification y is one-hot and f a softmax output, so sign(y) and y are one loss); a
candidate whose form is not cached but whose gradient on the probe batch is that of a cached or
earlier candidate (`expr.gradient_probe`) trains as that one does and takes its key. The hall of
fame holds no two entries that are the same loss for the task, and every LaTeX the steps emit is
the simplified form for the task.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from search_engine import catalog
from search_engine.config import ExperimentConfig
from search_engine.evolution import identity
from search_engine.evolution import operators as gp
from search_engine.evolution.checkpoint import GenerationProgress, SearchState
from search_engine.evolution.events import (
    CandidateEvaluated,
    CandidateRefined,
    GenerationFinished,
    HallOfFameEntry,
)
from search_engine.evolution.identity import population_keys, task_kind
from search_engine.expr.symbolic import to_simplified_latex
from search_engine.expr.tree import KNOWN_LOSSES, Node, parse, to_prefix
from search_engine.scoring.sequential import Outcome


@dataclass(frozen=True)
class WorkItem:
    """One candidate to evaluate (or refine): its place in the current population and its loss."""

    generation: int
    index: int  # position in the population; outcomes are handed back under it
    expression: str  # prefix form (expr.tree.parse reads it back)
    canonical_key: str

    @property
    def tree(self) -> Node:
        return parse(self.expression)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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


def fresh_state(config: ExperimentConfig, kind: str, baseline_fitness: float | None) -> SearchState:
    """Generation 0, drawn from `config.seed`; `baseline_fitness` is the baseline loss's fitness,
    evaluator work the driver does (`evaluator.fitness(KNOWN_LOSSES[baseline_name(kind)])`)."""
    rng = random.Random(config.seed)
    s = config.search
    population = gp.initial_population(
        rng, s.population_size, seeds=seed_losses(kind, s.seed_known_losses),
        min_height=s.init_min_height, max_height=s.init_max_height,
    )
    return SearchState(
        config=config.to_dict(), next_generation=0, population=population, rng=rng,
        baseline_fitness=baseline_fitness,
    )


def is_finished(state: SearchState) -> bool:
    """Whether the configured number of generations has been run."""
    return state.next_generation >= state.config["search"]["generations"]


def _progress(state: SearchState) -> GenerationProgress:
    """The current generation's progress; before its first outcome, computed from the cache (not stored)."""
    if state.progress is not None:
        if state.progress.generation != state.next_generation:
            raise ValueError(f"the state's progress is for generation {state.progress.generation}, "
                             f"its next generation is {state.next_generation}")
        return state.progress
    first_new: dict[str, int] = {}
    for i, key in enumerate(population_keys(state)):
        if key not in state.cache:
            first_new.setdefault(key, i)
    return GenerationProgress(generation=state.next_generation, new=sorted(first_new.values()))


def _item(state: SearchState, index: int, key: str) -> WorkItem:
    return WorkItem(state.next_generation, index, to_prefix(state.population[index]), key)


def pending_work(state: SearchState) -> list[WorkItem]:
    """What the current generation still needs evaluated, in population order: the first candidate
    of each canonical form that was not cached when the generation began and has no outcome yet."""
    keys = population_keys(state)
    return [_item(state, i, keys[i]) for i in _progress(state).new if keys[i] not in state.cache]


def chunks(items: Sequence[WorkItem], chunk_size: int) -> list[list[WorkItem]]:
    """Consecutive runs of `chunk_size` items (the last may be shorter): the evaluator calls.

    A chunk's members are trained together, so what they are must depend on the plan alone,
    never on how many workers take the chunks.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return [list(items[start : start + chunk_size]) for start in range(0, len(items), chunk_size)]


def apply_outcomes(state: SearchState, outcomes: Mapping[int, Outcome]) -> list[CandidateEvaluated]:
    """Store evaluated outcomes (by population index) and report the candidates now complete.

    Returns the CandidateEvaluated events of the longest prefix of the population whose outcomes
    are all known and that was not reported before, in population order; totals and hall of fame
    are updated as each is reported. An outcome already stored is kept (applying the same outcomes
    twice changes nothing); an index that is not pending work of this generation is an error.
    """
    progress = _progress(state)
    keys = population_keys(state)
    new = set(progress.new)
    for i in sorted(outcomes):
        if i not in new:
            raise ValueError(f"candidate {i!r} is not work of generation {state.next_generation} (out of "
                             "range, a cache hit, or a repeat of an earlier candidate's canonical form)")
        if not isinstance(outcomes[i], Outcome):
            raise TypeError(f"the outcome of candidate {i!r} is a {type(outcomes[i]).__name__}, not an Outcome")
    state.progress = progress  # from the first outcome on, "new" can no longer be read off the cache
    for i in sorted(outcomes):
        state.cache.setdefault(keys[i], outcomes[i])
        identity.remember_signature(state, i, keys[i])
    events = []
    while progress.reported < len(keys) and keys[progress.reported] in state.cache:
        i = progress.reported
        events.append(_report(state, i, keys[i], cache_hit=i not in new))
        progress.reported += 1
    return events


def _latex(state: SearchState, tree: Node) -> str:
    """The LaTeX of a candidate: its simplified form for the task (mul(mul(-1, -1), y) is y)."""
    return to_simplified_latex(tree, task_kind(state))


def _report(state: SearchState, index: int, key: str, cache_hit: bool) -> CandidateEvaluated:
    tree, outcome = state.population[index], state.cache[key]
    state.totals["evaluated"] += 1
    state.totals["rejected"] += int(not outcome.ok)
    state.totals["cache_hits"] += int(cache_hit)
    latex = _latex(state, tree)
    # Learned weights belong to the tree that was trained with them; a cache hit may be another tree
    # of the same loss, so it enters the hall only with an outcome of the symbolic loss.
    fits_tree = not (cache_hit and outcome.weights is not None)
    if outcome.ok and fits_tree and all(h.canonical_key != key for h in state.hall_of_fame):
        _enter_hall(state, HallOfFameEntry(to_prefix(tree), key, latex, outcome.fitness, tree.size(),
                                           state.next_generation, outcome.weights, scale=outcome.scale,
                                           tiebreak=outcome.tiebreak))
    weights = outcome.weights
    if weights is not None and len(weights) != tree.size() - 1:  # another tree's, of the same loss
        weights = None
    return CandidateEvaluated(
        generation=state.next_generation, index=index, expression=to_prefix(tree), canonical_key=key,
        latex=latex, fitness=outcome.fitness, rejection_reason=outcome.reason, cache_hit=cache_hit,
        weights=weights,
    )


def _enter_hall(state: SearchState, entry: HallOfFameEntry) -> None:
    """Insert or replace (same canonical key) an entry; keep the best few, simplest first on ties,
    and of entries that are one loss for the task (entries of a checkpoint written before keys knew
    the task may be) only the best."""
    hall = [h for h in state.hall_of_fame if h.canonical_key != entry.canonical_key] + [entry]
    hall.sort(key=_hall_rank)
    seen, distinct = set(), []
    for h in hall:
        identities = identity.loss_identities(state, h)
        if not identities & seen:
            distinct.append(h)
        seen |= identities
    state.hall_of_fame = distinct[: state.config["search"]["hall_of_fame_size"]]


def _hall_rank(entry: HallOfFameEntry) -> tuple:
    """Best first: fitness, then the continuous tie-breaker, then the smaller expression, then the older."""
    tiebreak = math.inf if entry.tiebreak is None else entry.tiebreak
    return (entry.fitness, tiebreak, entry.size, entry.generation)


def _require_reported(state: SearchState, step: str) -> GenerationProgress:
    progress = _progress(state)
    if progress.reported < len(state.population):
        raise ValueError(f"{step}: generation {state.next_generation} has candidates not evaluated "
                         f"or not reported yet (apply_outcomes releases them)")
    return progress


def _outcomes(state: SearchState) -> list[Outcome]:
    """Every current candidate's outcome (after any refinement), from the cache; all must be known."""
    keys = population_keys(state)
    missing = [i for i, key in enumerate(keys) if key not in state.cache]
    if missing:
        raise ValueError(f"candidates {missing} of generation {state.next_generation} have no outcome yet")
    return [state.cache[key] for key in keys]


def fitnesses(state: SearchState) -> list[float | None]:
    """Every current candidate's fitness (after any refinement); all must be known."""
    return [outcome.fitness for outcome in _outcomes(state)]


def ranks(state: SearchState) -> list[tuple[float, float, int] | None]:
    """How selection ranks every current candidate: (fitness, tie-breaker, size), so of equal error
    rates the lower validation cross-entropy wins, and of equal both the smaller expression; None
    without a fitness."""
    return [None if o.rank is None else (*o.rank, tree.size())
            for tree, o in zip(state.population, _outcomes(state), strict=True)]


def refinement_work(state: SearchState) -> list[WorkItem]:
    """Mode "top_k": the generation's k best distinct canonical forms never refined, best first.

    Refining lowers (or keeps) a form's rank, so it never changes which forms are the k best,
    nor the order of those still waiting: the list only shrinks as refinements are applied.
    """
    ls = state.config["local_search"]
    if ls["mode"] != "top_k":
        return []
    progress = _require_reported(state, "refinement_work")
    keys, order = population_keys(state), ranks(state)
    best: dict[str, int] = {}
    for i in sorted((i for i, r in enumerate(order) if r is not None), key=lambda i: order[i]):
        best.setdefault(keys[i], i)
    return [_item(state, i, key) for key, i in list(best.items())[: ls["top_k"]]
            if state.cache[key].weights is None and key not in state.refined_keys and i not in progress.refined]


def apply_refinements(state: SearchState, refined: Mapping[int, Outcome]) -> list[CandidateRefined]:
    """Apply refined outcomes (by population index), in `refinement_work` order, and report them.

    The better of the symbolic and the refined outcome is kept (all-ones weights are a valid point
    of the parameter space). Only the longest run of the waiting work that `refined` covers is
    applied, so events and hall of fame keep the work order; the rest waits for a later call.
    Outcomes already applied are ignored (idempotent); other indices are an error.
    """
    work = refinement_work(state)
    progress = state.progress  # refinement_work checked the generation is reported, so it is stored
    unknown = set(refined) - {item.index for item in work} - set(progress.refined if progress else ())
    if unknown:
        raise ValueError(f"candidates {sorted(unknown)} are not refinement work "
                         f"of generation {state.next_generation}")
    events = []
    for item in work:
        if item.index not in refined:
            break
        events.append(_refine(state, item, refined[item.index]))
        progress.refined.append(item.index)
    return events


def _refine(state: SearchState, item: WorkItem, refined: Outcome) -> CandidateRefined:
    before = state.cache[item.canonical_key]
    kept = refined if refined.ok and refined.rank <= before.rank else before  # rank: see Outcome.rank
    state.cache[item.canonical_key] = kept
    if kept is before:  # its weights stay None: remember it was refined, so no later generation repeats it
        state.refined_keys.add(item.canonical_key)
    tree = state.population[item.index]
    if kept is refined:
        _enter_hall(state, HallOfFameEntry(
            item.expression, item.canonical_key, _latex(state, tree), refined.fitness, tree.size(),
            state.next_generation, refined.weights, scale=refined.scale, tiebreak=refined.tiebreak))
    return CandidateRefined(
        generation=state.next_generation, index=item.index, expression=item.expression,
        canonical_key=item.canonical_key, symbolic_fitness=before.fitness, fitness=refined.fitness,
        weights=refined.weights or (),
    )


def finish_generation(state: SearchState, seconds: float) -> GenerationFinished:
    """The generation's summary, appended to the history; the state moves to the next generation
    (breed it next, unless `is_finished`). `seconds` is the driver's wall-clock time for it."""
    progress = _require_reported(state, "finish_generation")
    if refinement_work(state):
        raise ValueError(f"finish_generation: generation {state.next_generation} has refinements "
                         "not applied yet")
    population, keys, fits = state.population, population_keys(state), fitnesses(state)
    scored = [(f, i) for i, f in enumerate(fits) if f is not None]
    values = [f for f, _ in scored]
    best_i = min(scored)[1] if scored else None
    summary = GenerationFinished(
        generation=state.next_generation,
        best_fitness=min(values) if values else None,
        mean_fitness=statistics.fmean(values) if values else None,
        median_fitness=statistics.median(values) if values else None,
        evaluated=len(population),
        rejected=sum(f is None for f in fits),
        cache_hits=len(keys) - len(progress.new),
        best_expression=to_prefix(population[best_i]) if best_i is not None else None,
        best_latex=_latex(state, population[best_i]) if best_i is not None else None,
        hall_of_fame=tuple(state.hall_of_fame),
        seconds=seconds,
    )
    state.history.append(summary)
    state.next_generation += 1
    state.progress = None
    return summary


def breed(state: SearchState) -> None:
    """Replace the finished generation by the next one, bred with `state.rng` from its fitnesses."""
    just_finished = state.history and state.history[-1].generation == state.next_generation - 1
    if state.progress is not None or not just_finished:
        raise ValueError("breed: the current generation must be finished (finish_generation) first")
    s = state.config["search"]
    state.population = gp.next_generation(
        state.rng, state.population, ranks(state),
        crossover_rate=s["crossover_rate"], mutation_rate=s["mutation_rate"],
        tournament_size=s["tournament_size"], elitism_rate=s["elitism_rate"], max_height=s["max_height"],
        mutation_min_height=s["mutation_min_height"], mutation_max_height=s["mutation_max_height"],
    )
    state.legacy_keys = False  # the generation begun under task-agnostic keys is over
