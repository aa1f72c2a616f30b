"""What a search produced, and the check that a checkpoint belongs to the configuration resuming it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_engine.evolution.checkpoint import CheckpointError, write_json_atomic
from search_engine.evolution.events import GenerationFinished, HallOfFameEntry


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


def write_result(result: SearchResult, path: str | Path) -> None:
    """Write result.json atomically."""
    write_json_atomic(Path(path), result.to_dict())


# Sections that say how a search runs, not what it computes: a resumed search may change them
# (e.g. continue on a GPU, or with another evaluation strategy; results then agree to float tolerance).
_HOW_SECTIONS = ("evaluation", "device")


def check_same_experiment(saved: dict, current: dict, extendable: tuple[str, str] = ("search", "generations")) -> None:
    """Raise CheckpointError naming the settings that differ, other than `extendable` (the field a
    resume may raise to extend a finished run: each method's generation count) and _HOW_SECTIONS."""
    if saved.get("method", "evomal") != current.get("method", "evomal"):
        raise CheckpointError(f"the checkpoint was written by method {saved.get('method', 'evomal')!r}, "
                              f"not {current.get('method', 'evomal')!r}")
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
