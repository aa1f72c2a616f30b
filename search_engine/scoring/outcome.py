"""What scoring a candidate gives back (torch-free, so stored states and the web can read it without torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

TRAINING_DIVERGED = "non-finite loss or weights during training"


@dataclass(frozen=True)
class Outcome:
    """A candidate's result: a fitness (lower is better), or None with the reason it failed."""

    fitness: float | None
    reason: str | None = None
    weights: tuple[float, ...] | None = None  # learned edge weights, when local search ran
    scale: float | None = None  # the loss was trained multiplied by this (the tuned protocol: scoring.protocol)
    # Classification: the validation cross-entropy of the trained model, a continuous measure that
    # breaks ties between equal error rates (a few hundred validation samples make ties common).
    tiebreak: float | None = None

    @property
    def rank(self) -> tuple[float, float] | None:
        """How the search ranks this outcome: (fitness, tie-breaker); None without a fitness."""
        if self.fitness is None:
            return None
        return (self.fitness, math.inf if self.tiebreak is None else self.tiebreak)

    @property
    def ok(self) -> bool:
        return self.fitness is not None
