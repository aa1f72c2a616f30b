"""ML3's search state and its checkpoint: written atomically after every report block, read to resume.

JSON, never a pickle, like the evolutionary checkpoint: the loss network's flat weights, Adam's
moment estimates and step count, the next report (block of meta steps), the hall of fame, the
history and the counts. Every random choice of a meta step is derived from (config.seed, meta
step) by `scoring.local_search.step_seed`, so the meta step number is the whole random state:
a resumed run repeats the uninterrupted one exactly. Floats are stored as Python floats, which
hold float32 and float64 values exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from search_engine.evolution.checkpoint import (
    CheckpointError,
    entry_from_dict,
    generation_from_dict,
)
from search_engine.evolution.events import GenerationFinished, HallOfFameEntry


@dataclass(frozen=True)
class Block:
    """A generation's work: the meta steps of report `report`, from these weights and Adam state."""

    report: int
    weights: tuple[float, ...]  # the loss network's weights, `NetworkLoss.flat` order
    adam: dict | None  # {"step", "exp_avg", "exp_avg_sq"}; None before the first meta step
    index: int = 0  # one item per generation


@dataclass(frozen=True)
class BlockOutcome:
    """What a block left: the weights and Adam state after it, and the network's fitness (None: diverged,
    or the block failed: then `weights` is None and `reason` says why)."""

    weights: tuple[float, ...] | None
    adam: dict | None
    fitness: float | None
    reason: str | None = None


FORMAT = "lfl-ml3-checkpoint"
VERSION = 1


@dataclass
class ML3State:
    """Everything an ML3 run needs to continue."""

    config: dict
    next_report: int  # reports done so far; the next block starts at meta step next_report * report_every
    weights: list[float]  # the loss network's weights, `NetworkLoss.flat` order
    adam: dict | None = None  # {"step": float, "exp_avg": [...], "exp_avg_sq": [...]}; None before the first step
    hall_of_fame: list[HallOfFameEntry] = field(default_factory=list)
    history: list[GenerationFinished] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=lambda: {"evaluated": 0, "rejected": 0, "cache_hits": 0})
    baseline_fitness: float | None = None
    plan: dict | None = None
    # The open report's block, applied but not yet finished (a state stored between the two):
    block_done: bool = False
    block_fitness: float | None = None


def state_to_dict(state: ML3State) -> dict[str, Any]:
    """The JSON form; "block" is written only between a block's outcome and its report's end."""
    data = {
        "format": FORMAT, "version": VERSION, "config": state.config, "next_report": state.next_report,
        "weights": list(state.weights), "adam": state.adam,
        "hall_of_fame": [asdict(h) for h in state.hall_of_fame], "history": [g.to_dict() for g in state.history],
        "totals": dict(state.totals), "baseline_fitness": state.baseline_fitness, "plan": state.plan,
    }
    if state.block_done:
        data["block"] = {"fitness": state.block_fitness}
    return data


def state_from_dict(data: Any) -> ML3State:
    """The state a checkpoint holds; CheckpointError if it is not an ML3 checkpoint or is damaged."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError("not an lfl ML3 checkpoint (was it written by another method?)")
    if data.get("version") != VERSION:
        raise CheckpointError(f"ML3 checkpoint version {data.get('version')!r} is not supported (need {VERSION})")
    try:
        return ML3State(
            config=data["config"], next_report=int(data["next_report"]),
            weights=[float(w) for w in data["weights"]], adam=data["adam"],
            hall_of_fame=[entry_from_dict(h) for h in data["hall_of_fame"]],
            history=[generation_from_dict(g) for g in data["history"]], totals=dict(data["totals"]),
            baseline_fitness=data["baseline_fitness"], plan=data.get("plan"),
            block_done="block" in data, block_fitness=(data.get("block") or {}).get("fitness"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"ML3 checkpoint is damaged: {exc}") from exc
