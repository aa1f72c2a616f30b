"""Scoring candidate losses: the rejection screen, then fitness = validation metric after training.

The search loop talks to an evaluator only through `evaluate(trees) -> list[Outcome]` and its
`chunk_size` (how many candidates it prefers per call; the loop checks for a stop request between
calls). A batched evaluator that trains a whole population as one program can replace this
sequential one without touching the loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from search_engine.config import ExperimentConfig
from search_engine.expression import Node
from search_engine.losses import make_loss
from search_engine.rejection import fixed_subset, initial_outputs, screen
from search_engine.tasks import Task
from search_engine.training import evaluate_metric, train

TRAINING_DIVERGED = "non-finite loss or weights during training"


@dataclass(frozen=True)
class Outcome:
    """A candidate's result: a fitness (lower is better), or None with the reason it failed."""

    fitness: float | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.fitness is not None


class SequentialEvaluator:
    """Evaluates candidates one after another on the task's device."""

    chunk_size = 1

    def __init__(self, task: Task, config: ExperimentConfig):
        self.task = task
        self.config = config
        rej = config.rejection
        splits = task.splits
        idx = fixed_subset(len(splits.x_train), rej.samples, config.seed).to(task.device)
        self._screen_targets = splits.y_train[idx]
        self._screen_start = initial_outputs(len(idx), task.info.n_outputs, config.seed, task.device)

    def screen(self, tree: Node) -> str | None:
        """The rejection protocol; None means the candidate may be trained."""
        rej = self.config.rejection
        if not rej.enabled:
            return None
        return screen(
            tree, self.task.kind, self._screen_targets, self._screen_start,
            steps=rej.steps, lr=self.config.training.lr,
        )

    def fitness(self, tree: Node) -> Outcome:
        """Train the task model from the search's fixed seed and measure the validation metric."""
        s, cfg = self.task.splits, self.config
        model = self.task.new_model(cfg.seed)
        loss_fn = make_loss(tree, self.task.kind)
        if not train(model, loss_fn, s.x_train, s.y_train, cfg.training, data_seed=cfg.seed):
            return Outcome(None, TRAINING_DIVERGED)
        value = evaluate_metric(model, s.x_val, s.y_val, self.task.kind)
        return Outcome(value) if math.isfinite(value) else Outcome(None, TRAINING_DIVERGED)

    def evaluate(self, trees: Sequence[Node]) -> list[Outcome]:
        """Screen then train each candidate; never raises for a bad loss."""
        outcomes = []
        for tree in trees:
            reason = self.screen(tree)
            outcomes.append(Outcome(None, reason) if reason else self.fitness(tree))
        return outcomes
