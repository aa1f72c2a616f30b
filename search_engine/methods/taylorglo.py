"""TaylorGLO (Gonzalez & Miikkulainen, GECCO 2021): CMA-ES over a third-order Taylor polynomial loss.

Each generation CMA-ES (the `cmaes` library, seeded from `config.seed`) proposes
`taylorglo.population_size` parameter vectors theta = (c_y, c_f, t2..t7). Each becomes the
polynomial of `taylorglo_poly` - the fixed tree `POLYNOMIAL_EXPRESSION` with theta in its edge
weights - and the proposals are scored in the evaluator's chunks as one population
(`BatchedEvaluator.fitness_many`): train the task's model from `config.seed` with the `training`
section and measure the validation metric, exactly EvoMAL's fitness. There is no rejection screen
and no local search. A candidate whose training diverges gets no fitness (reported as diverged)
and CMA-ES is told the largest finite float, so it ranks last and never breaks the update.

Candidates are reported in proposal order as their outcomes arrive; CMA-ES is told whole
generations only, so a stopped search keeps its finished generations and the candidates of the
interrupted one scored before the stop (in the hall of fame). The hall of fame holds distinct
parameter vectors (`candidate_key`); each entry is an ordinary weighted learned loss.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass

import numpy as np

from search_engine.config import load_config
from search_engine.evolution.checkpoint import CheckpointError
from search_engine.evolution.events import CandidateEvaluated, GenerationFinished, HallOfFameEntry
from search_engine.methods import taylorglo_state as stored
from search_engine.methods.settings import TaylorGLOSettings
from search_engine.methods.taylorglo_poly import (
    POLYNOMIAL_EXPRESSION,
    candidate_key,
    polynomial_latex,
    polynomial_tree,
)
from search_engine.study.method import STEP_LABELS, Method, WorkCounts

#: What CMA-ES is told for a candidate without a fitness: worse than any finite validation metric.
WORST_TOLD = sys.float_info.max


@dataclass(frozen=True)
class Proposal:
    """One CMA-ES proposal of the current generation: its place and its parameter vector."""

    index: int
    theta: tuple[float, ...]


@dataclass(frozen=True)
class TaylorGLO(Method):
    """The TaylorGLO method: propose (ask CMA-ES), evaluate (train), tell."""

    name: str = "taylorglo"
    extendable: tuple[str, str] = ("taylorglo", "generations")

    def population_size(self, config) -> int:
        return config.taylorglo.population_size

    def generation_count(self, stored: dict) -> int:
        """CMA-ES generations."""
        return int(stored.get("taylorglo", {}).get("generations", TaylorGLOSettings.generations))

    def planned_work(self, config) -> WorkCounts:
        """Every proposal trained once; no screen, no meta-gradients; its polynomial's weights are its own
        parameters, so the meta-test compares it with the baseline only."""
        t = config.taylorglo
        return WorkCounts(t.population_size * t.generations, 0, 0, 0, config.meta_test.seeds * 2)

    def step_labels(self) -> dict[str, str]:
        return {key: STEP_LABELS[key] for key in ("fitness_steps", "meta_test_steps")}

    def fresh_state(self, config, kind, baseline_fitness):
        return stored.TaylorGLOState(config=config.to_dict(), baseline_fitness=baseline_fitness)

    def check_resumable(self, state, config) -> None:
        """The rounds must match the history and replay bit for bit (`restored_optimizer`)."""
        if len(state.rounds) != len(state.history):
            raise CheckpointError(f"the checkpoint is damaged: {len(state.rounds)} CMA-ES rounds "
                                  f"for {len(state.history)} generations")
        state.live = (stored.restored_optimizer(config, state), len(state.rounds), False)

    def state_to_dict(self, state):
        return stored.state_to_dict(state)

    def state_from_dict(self, data):
        return stored.state_from_dict(data)

    def next_generation(self, state) -> int:
        return state.next_generation

    def is_finished(self, state) -> bool:
        return state.next_generation >= state.config["taylorglo"]["generations"]

    def open_generation(self, state) -> None:
        """Ask CMA-ES for this generation's proposals (once: they are kept in the state)."""
        if state.current is not None:
            return
        optimizer = _optimizer(state, asked=False)
        proposals = [optimizer.ask() for _ in range(state.config["taylorglo"]["population_size"])]  # each (8,)
        state.current = stored.Generation(solutions=[tuple(float(v) for v in x) for x in proposals])
        state.live = (optimizer, len(state.rounds), True)

    def work(self, state, phase, chunk_size):
        current = state.current
        todo = [Proposal(i, theta) for i, theta in enumerate(current.solutions) if i not in current.outcomes]
        return [todo[start : start + chunk_size] for start in range(0, len(todo), max(1, chunk_size))]

    def evaluate(self, evaluator, phase, items):
        losses = [polynomial_tree(item.theta) for item in items]  # (tree, weights); one tree for all
        trees, weights = [t for t, _ in losses], [w for _, w in losses]
        if hasattr(evaluator, "fitness_many"):
            return evaluator.fitness_many(trees, weights)
        return [evaluator.fitness(t, w) for t, w in losses]  # a sequential evaluator

    def apply(self, state, phase, outcomes):
        """Keep the outcomes (the first of each index), report the proposals now complete, in order."""
        current, size = state.current, len(state.current.solutions)
        for i in sorted(outcomes):
            if not 0 <= i < size:
                raise ValueError(f"proposal {i!r} is not work of generation {state.next_generation}")
            current.outcomes.setdefault(i, outcomes[i])
        events = []
        while current.reported < size and current.reported in current.outcomes:
            events.append(_report(state, current.reported))
            current.reported += 1
        return events

    def finish_generation(self, state, seconds):
        """Tell CMA-ES the generation's values; its summary, appended to the history."""
        current, gen = state.current, state.next_generation
        fitnesses = [current.outcomes[i].fitness for i in range(len(current.solutions))]
        told = [WORST_TOLD if f is None else f for f in fitnesses]
        optimizer = _optimizer(state, asked=True)
        optimizer.tell([(np.asarray(theta, dtype=np.float64), value)
                        for theta, value in zip(current.solutions, told, strict=True)])
        state.rounds.append({"solutions": [list(theta) for theta in current.solutions], "told": told})
        summary = _summarize(gen, current.solutions, fitnesses, state, seconds)
        state.history.append(summary)
        state.current, state.live = None, (optimizer, len(state.rounds), False)
        return summary

    def item_to_dict(self, item) -> dict:
        return {"index": item.index, "theta": list(item.theta)}

    def item_from_dict(self, data):
        return Proposal(int(data["index"]), tuple(float(v) for v in data["theta"]))


TAYLORGLO = TaylorGLO()


def _optimizer(state, asked: bool):
    """CMA-ES as it stands after the state's finished generations (`asked`: and this generation's
    proposals asked): the one kept in memory when it is that, else rebuilt by replaying the rounds."""
    if state.live is not None and state.live[1:] == (len(state.rounds), asked):
        return state.live[0]
    config = load_config(state.config, check_data=False)
    optimizer = stored.restored_optimizer(config, state)
    if asked:
        proposals = np.stack([optimizer.ask() for _ in range(config.taylorglo.population_size)])
        if not np.array_equal(proposals, np.asarray(state.current.solutions, dtype=np.float64)):
            raise CheckpointError(f"generation {state.next_generation}'s proposals cannot be replayed: CMA-ES "
                                  "now proposes other parameters (another version of cmaes or numpy?)")
    return optimizer


def _report(state, index: int) -> CandidateEvaluated:
    theta, outcome = state.current.solutions[index], state.current.outcomes[index]
    tree, weights = polynomial_tree(theta)
    key, latex, gen = candidate_key(theta), polynomial_latex(theta), state.next_generation
    state.totals["evaluated"] += 1
    state.totals["rejected"] += int(not outcome.ok)
    if outcome.ok:
        _enter_hall(state, HallOfFameEntry(POLYNOMIAL_EXPRESSION, key, latex, outcome.fitness, tree.size(), gen,
                                           weights), state.config["search"]["hall_of_fame_size"])
    return CandidateEvaluated(
        generation=gen, index=index, expression=POLYNOMIAL_EXPRESSION, canonical_key=key, latex=latex,
        fitness=outcome.fitness, rejection_reason=outcome.reason, cache_hit=False, weights=weights,
    )


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
