"""Search state on disk: written atomically after every generation, read back to resume.

The checkpoint is JSON (never a pickle): the population as prefix strings, the random generator's
state, the equivalence cache, the hall of fame and the history. Resuming from it continues the
search exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from search_engine.evolution.events import GenerationFinished, HallOfFameEntry
from search_engine.expr.tree import Node, parse, to_prefix
from search_engine.scoring.outcome import Outcome

FORMAT = "lfl-search-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (unreadable, another format, another configuration)."""


@dataclass
class GenerationProgress:
    """How far the current generation has got (see `evolution.steps`); None between generations.

    Checkpoints written between generations (all that `run_search` writes) hold no progress, so
    their format is the one older checkpoints have; a state stored mid-generation carries it.
    """

    generation: int  # the generation this progress belongs to (the state's next_generation)
    new: list[int]  # first occurrences of the canonical forms not cached when the generation began
    reported: int = 0  # CandidateEvaluated events released so far: a prefix of the population
    refined: list[int] = field(default_factory=list)  # indices whose top_k refinement was applied


@dataclass
class SearchState:
    """Everything the search needs to continue: what the steps of `evolution.steps` read and change."""

    config: dict
    next_generation: int
    population: list[Node]
    rng: random.Random
    cache: dict[str, Outcome] = field(default_factory=dict)
    hall_of_fame: list[HallOfFameEntry] = field(default_factory=list)
    history: list[GenerationFinished] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=lambda: {"evaluated": 0, "rejected": 0, "cache_hits": 0})
    baseline_fitness: float | None = None
    plan: dict | None = None  # scoring.plan.plan_record of the evaluator that ran this search
    progress: GenerationProgress | None = None  # work done inside the current generation
    # Gradient signature (expr.gradient_probe) -> the cache key its first candidate was stored under:
    # a candidate whose own key is not cached but whose gradient is known is that candidate (steps).
    signatures: dict[str, str] = field(default_factory=dict)
    # True while a generation begun before cache keys knew the task kind (a checkpoint written then,
    # mid-generation) finishes: its keys stay task-agnostic and signature-free until it is bred.
    legacy_keys: bool = False
    # Canonical keys refined by local search mode "top_k" whose refinement was not kept (the symbolic
    # outcome ranked better): they are not refined again in later generations.
    refined_keys: set[str] = field(default_factory=set)


def state_to_dict(state: SearchState) -> dict[str, Any]:
    """The JSON form of `state`; "progress" is written only mid-generation (see GenerationProgress)."""
    version, internal, gauss = state.rng.getstate()
    data = {
        "format": FORMAT,
        "version": VERSION,
        "config": state.config,
        "next_generation": state.next_generation,
        "population": [to_prefix(t) for t in state.population],
        "rng_state": [version, list(internal), gauss],
        "cache": {k: outcome_to_dict(o) for k, o in state.cache.items()},
        "hall_of_fame": [asdict(h) for h in state.hall_of_fame],
        "history": [g.to_dict() for g in state.history],
        "totals": dict(state.totals),
        "baseline_fitness": state.baseline_fitness,
        "plan": state.plan,
        "signatures": dict(state.signatures),
    }
    if state.progress is not None:
        data["progress"] = asdict(state.progress)
    if state.legacy_keys:
        data["legacy_keys"] = True
    if state.refined_keys:
        data["refined_keys"] = sorted(state.refined_keys)
    return data


def state_from_dict(data: dict[str, Any]) -> SearchState:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError("not an lfl search checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(f"checkpoint version {data.get('version')!r} is not supported (need {VERSION})")
    try:
        rng = random.Random()
        version, internal, gauss = data["rng_state"]
        rng.setstate((version, tuple(internal), gauss))
        return SearchState(
            config=data["config"],
            next_generation=int(data["next_generation"]),
            population=[parse(s) for s in data["population"]],
            rng=rng,
            cache={k: outcome_from_dict(v) for k, v in data["cache"].items()},
            hall_of_fame=[entry_from_dict(h) for h in data["hall_of_fame"]],
            history=[generation_from_dict(g) for g in data["history"]],
            totals=dict(data["totals"]),
            baseline_fitness=data["baseline_fitness"],
            plan=data.get("plan"),  # absent in checkpoints written before plans were recorded
            progress=_progress_from_dict(data.get("progress")),  # absent between generations
            # Both absent in checkpoints written before keys knew the task (see SearchState).
            signatures={str(k): str(v) for k, v in dict(data.get("signatures") or {}).items()},
            legacy_keys=bool(data.get("legacy_keys", "signatures" not in data and "progress" in data)),
            refined_keys={str(k) for k in data.get("refined_keys") or ()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint is damaged: {exc}") from exc


def _progress_from_dict(d: dict[str, Any] | None) -> GenerationProgress | None:
    if d is None:
        return None
    return GenerationProgress(
        generation=int(d["generation"]), new=[int(i) for i in d["new"]],
        reported=int(d["reported"]), refined=[int(i) for i in d["refined"]],
    )


def generation_from_dict(d: dict[str, Any]) -> GenerationFinished:
    """A GenerationFinished event from its JSON form (every method's checkpoint keeps its history so)."""
    d = {k: v for k, v in d.items() if k != "type"}
    d["hall_of_fame"] = tuple(entry_from_dict(h) for h in d["hall_of_fame"])
    return GenerationFinished(**d)


def outcome_to_dict(outcome: Outcome) -> dict[str, Any]:
    """An outcome as JSON (the checkpoint's cache, a chunk's stored outcomes)."""
    d = {"fitness": outcome.fitness, "reason": outcome.reason,
         "weights": None if outcome.weights is None else list(outcome.weights)}
    for name in ("scale", "tiebreak"):  # absent from outcomes stored before they existed
        if getattr(outcome, name) is not None:
            d[name] = getattr(outcome, name)
    return d


def outcome_from_dict(d: dict[str, Any]) -> Outcome:
    return Outcome(d["fitness"], d["reason"], _tuple(d.get("weights")), d.get("scale"), d.get("tiebreak"))


def _tuple(values) -> tuple | None:
    return None if values is None else tuple(values)


def entry_from_dict(d: dict[str, Any]) -> HallOfFameEntry:
    """A hall-of-fame entry from its JSON form (lists back to tuples)."""
    return HallOfFameEntry(**{**d, "weights": _tuple(d.get("weights"))})


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file and rename it over `path`: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def save(path: Path, state: SearchState) -> None:
    write_json_atomic(path, state_to_dict(state))


def read_json(path: str | Path) -> Any:
    """A checkpoint file's JSON; CheckpointError naming the problem if it cannot be read (every method's)."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path} is not valid JSON: {exc.msg}") from exc


def load(path: Path) -> SearchState:
    return state_from_dict(read_json(path))
