"""TaylorGLO's search state, its JSON checkpoint, and the CMA-ES optimizer rebuilt from it.

The checkpoint is JSON, never a pickle: the configuration, the baseline, the evaluation plan, the
hall of fame, the per-generation history and, for every finished generation, the parameter
vectors CMA-ES proposed and the values it was told. The CMA-ES state is not stored: `cmaes.CMA`
is a deterministic function of its start (mean, sigma, population size, seed) and of those
ask/tell rounds, so `restored_optimizer` starts it anew from `config.seed` and replays them.
Each replayed proposal must equal the stored one bit for bit (else another cmaes or numpy has
changed the sampling, and the checkpoint is refused), so a resumed search continues exactly as
an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from cmaes import CMA

from search_engine.config import ExperimentConfig
from search_engine.evolution import checkpoint as evolution_checkpoint
from search_engine.evolution.checkpoint import (
    CheckpointError,
    entry_from_dict,
    generation_from_dict,
    outcome_from_dict,
    outcome_to_dict,
)
from search_engine.evolution.events import GenerationFinished, HallOfFameEntry
from search_engine.methods.taylorglo_poly import N_PARAMETERS
from search_engine.scoring.outcome import Outcome

FORMAT = "lfl-taylorglo-checkpoint"
VERSION = 1


@dataclass
class Generation:
    """The generation in progress: CMA-ES's proposals, the outcomes known so far (by proposal index)
    and how many proposals have been reported (a prefix). Stored only while a generation is open."""

    solutions: list[tuple[float, ...]]
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    reported: int = 0


@dataclass
class TaylorGLOState:
    """Everything a TaylorGLO search needs to continue; owned by one run."""

    config: dict
    baseline_fitness: float | None
    plan: dict | None = None  # scoring.plan.plan_record of the evaluator that ran this search
    rounds: list[dict] = field(default_factory=list)  # per generation: {"solutions": [[8]...], "told": [...]}
    hall_of_fame: list[HallOfFameEntry] = field(default_factory=list)
    history: list[GenerationFinished] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=lambda: {"evaluated": 0, "rejected": 0, "cache_hits": 0})
    current: Generation | None = None  # the open generation (None between generations)
    # The optimizer kept in memory by the process running the search: (CMA-ES, rounds told, this
    # generation asked); never stored, rebuilt from `rounds` where it is missing (`methods.taylorglo`).
    live: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def next_generation(self) -> int:
        return len(self.history)


def new_optimizer(config: ExperimentConfig) -> CMA:
    """CMA-ES at the configured start, its sampling seeded by `config.seed`."""
    t = config.taylorglo
    return CMA(mean=np.full(N_PARAMETERS, t.mean, dtype=np.float64), sigma=t.sigma,
               population_size=t.population_size, seed=config.seed)


def restored_optimizer(config: ExperimentConfig, state: TaylorGLOState) -> CMA:
    """A new optimizer with the state's finished generations asked and told again, checked bit for bit."""
    optimizer = new_optimizer(config)
    for generation, round_ in enumerate(state.rounds):
        proposals = [optimizer.ask() for _ in range(config.taylorglo.population_size)]
        stored = np.asarray(round_["solutions"], dtype=np.float64)  # (lambda, 8)
        if stored.shape != (len(proposals), N_PARAMETERS) or not np.array_equal(np.stack(proposals), stored):
            raise CheckpointError(
                f"the checkpoint's generation {generation} cannot be replayed: CMA-ES now proposes other "
                "parameters (was it written by another version of cmaes or numpy?)")
        optimizer.tell(list(zip(proposals, (float(v) for v in round_["told"]), strict=True)))
    return optimizer


# ------------------------------------------------------------------ JSON


def state_to_dict(state: TaylorGLOState) -> dict[str, Any]:
    """The JSON form; "current" is written only while a generation is open."""
    data = {
        "format": FORMAT,
        "version": VERSION,
        "config": state.config,
        "baseline_fitness": state.baseline_fitness,
        "plan": state.plan,
        "rounds": state.rounds,
        "hall_of_fame": [asdict(h) for h in state.hall_of_fame],
        "history": [g.to_dict() for g in state.history],
        "totals": dict(state.totals),
    }
    if state.current is not None:
        c = state.current
        data["current"] = {"solutions": [list(x) for x in c.solutions], "reported": c.reported,
                           "outcomes": {str(i): outcome_to_dict(o) for i, o in sorted(c.outcomes.items())}}
    return data


def state_from_dict(data: dict[str, Any], where: str = "checkpoint") -> TaylorGLOState:
    """The state of a TaylorGLO checkpoint; CheckpointError for another format, method or version."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{where} is not an lfl search checkpoint")
    if data.get("format") == evolution_checkpoint.FORMAT:
        method = (data.get("config") or {}).get("method", "evomal")
        raise CheckpointError(f"{where} was written by method {method!r}, not 'taylorglo': "
                              "resume it with that method, or start this search elsewhere")
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not an lfl TaylorGLO checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{where} has version {data.get('version')!r}, which is not supported (need {VERSION})")
    try:
        rounds = [{"solutions": [[float(v) for v in s] for s in r["solutions"]],
                   "told": [float(v) for v in r["told"]]} for r in data["rounds"]]
        return TaylorGLOState(
            config=data["config"], baseline_fitness=data["baseline_fitness"], plan=data.get("plan"),
            rounds=rounds, hall_of_fame=[entry_from_dict(h) for h in data["hall_of_fame"]],
            history=[generation_from_dict(g) for g in data["history"]], totals=dict(data["totals"]),
            current=_generation_from_dict(data.get("current")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where} is damaged: {exc}") from exc


def _generation_from_dict(d: dict[str, Any] | None) -> Generation | None:
    if d is None:
        return None
    return Generation(solutions=[tuple(float(v) for v in x) for x in d["solutions"]], reported=int(d["reported"]),
                      outcomes={int(i): outcome_from_dict(o) for i, o in d["outcomes"].items()})
