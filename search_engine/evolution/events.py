"""Typed, immutable events emitted by `run_search`.

Observers (the CLI progress bar, the web worker that stores them) receive these snapshots; they
cannot change the search. `to_dict()` gives the JSON form with a `type` field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class HallOfFameEntry:
    """One of the best distinct losses found so far: an expression tree, or a network loss.

    For a network loss (`network` set: the JSON form of `expr.network.NetworkLoss`), `expression`
    and `canonical_key` are its `NetworkLoss.expression` (architecture and a fingerprint of the
    weights, not parseable as a formula), `latex` its formula over the layers and `size` its
    number of weights. Code that needs the loss itself branches on `network is None`.
    """

    expression: str  # prefix string, parseable by expression.parse (a description for a network loss)
    canonical_key: str
    latex: str
    fitness: float
    size: int  # tree nodes, or a network loss's number of weights
    generation: int  # when it was first found
    weights: tuple[float, ...] | None = None  # learned edge weights (local search), None = all ones
    network: dict | None = None  # a network loss (ML3), None for an expression tree
    scale: float | None = None  # the search trained it times this (the tuned protocol's gradient scale)
    tiebreak: float | None = None  # classification: validation cross-entropy, ranks equal fitnesses


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class SearchStarted(Event):
    type: ClassVar[str] = "search_started"
    config: dict
    generations: int
    population_size: int
    start_generation: int  # > 0 when resumed from a checkpoint
    baseline_loss: str
    baseline_fitness: float | None
    plan: dict | None = None  # how candidates are scored: scoring.plan.plan_record


@dataclass(frozen=True)
class CandidateEvaluated(Event):
    type: ClassVar[str] = "candidate_evaluated"
    generation: int
    index: int  # position in the population
    expression: str
    canonical_key: str
    latex: str
    fitness: float | None  # None when rejected or diverged
    rejection_reason: str | None
    cache_hit: bool
    weights: tuple[float, ...] | None = None  # learned edge weights when local search ran


@dataclass(frozen=True)
class CandidateRefined(Event):
    """Local search (mode "top_k") refined one of the generation's best candidates."""

    type: ClassVar[str] = "candidate_refined"
    generation: int
    index: int
    expression: str
    canonical_key: str
    symbolic_fitness: float | None  # before local search (all weights 1)
    fitness: float | None  # with the learned weights
    weights: tuple[float, ...]


@dataclass(frozen=True)
class GenerationFinished(Event):
    type: ClassVar[str] = "generation_finished"
    generation: int
    best_fitness: float | None
    mean_fitness: float | None  # over candidates with a fitness
    median_fitness: float | None
    evaluated: int
    rejected: int
    cache_hits: int
    best_expression: str | None
    best_latex: str | None
    hall_of_fame: tuple[HallOfFameEntry, ...]
    seconds: float


@dataclass(frozen=True)
class SearchFinished(Event):
    type: ClassVar[str] = "search_finished"
    status: str  # "completed" or "stopped"
    generations_completed: int
    best: HallOfFameEntry | None
    evaluated: int
    rejected: int
    cache_hits: int
