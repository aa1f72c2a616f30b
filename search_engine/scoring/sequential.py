"""Scoring candidate losses: the rejection screen, then fitness = validation metric after training.

The search loop talks to an evaluator only through `evaluate(trees) -> list[Outcome]` and its
`chunk_size` (how many candidates it prefers per call; the loop checks for a stop request between
calls, and the training loops check it every few steps via `interrupt`). A batched evaluator that trains a whole population as one program can replace this
sequential one without touching the loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from search_engine.config import ExperimentConfig
from search_engine.expr.losses import make_loss
from search_engine.expr.tree import Node
from search_engine.scoring.rejection import fixed_subset, initial_outputs, screen
from search_engine.tasks.task import Task
from search_engine.tasks.training import LossFn, evaluate_metric, train

TRAINING_DIVERGED = "non-finite loss or weights during training"


@dataclass(frozen=True)
class Outcome:
    """A candidate's result: a fitness (lower is better), or None with the reason it failed."""

    fitness: float | None
    reason: str | None = None
    weights: tuple[float, ...] | None = None  # learned edge weights, when local search ran

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

    def fitness(self, tree: Node, weights: tuple[float, ...] | None = None) -> Outcome:
        """Train the task model from the search's fixed seed and measure the validation metric.

        With `weights`, the loss is the parameterized form of `tree` with those edge weights.
        """
        s, cfg = self.task.splits, self.config
        model = self.task.new_model(cfg.seed)
        loss_fn = loss_for(tree, self.task.kind, weights, self.task.device)
        if not train(model, loss_fn, s.x_train, s.y_train, cfg.training, data_seed=cfg.seed):
            return Outcome(None, TRAINING_DIVERGED, weights)
        value = evaluate_metric(model, s.x_val, s.y_val, self.task.kind)
        return Outcome(value, None, weights) if math.isfinite(value) else Outcome(None, TRAINING_DIVERGED, weights)

    def refine(self, tree: Node) -> Outcome:
        """Local search on the edge weights by unrolled meta-gradients, then fitness with them."""
        from search_engine.scoring.local_search import local_search

        cfg = self.config
        found = local_search(self.task, tree, cfg.local_search, cfg.training, seed=cfg.seed)
        return self.fitness(tree, found.weights)

    def evaluate(self, trees: Sequence[Node]) -> list[Outcome]:
        """Screen, then (local search when mode is "all") and train each candidate; never raises for a bad loss.

        Order per candidate: rejection -> local search -> fitness, so no gradient work is spent on
        losses the cheap screen throws away.
        """
        refine_all = self.config.local_search.mode == "all"
        outcomes = []
        for tree in trees:
            reason = self.screen(tree)
            if reason:
                outcomes.append(Outcome(None, reason))
            else:
                outcomes.append(self.refine(tree) if refine_all else self.fitness(tree))
        return outcomes


def loss_for(tree: Node, kind: str, weights: tuple[float, ...] | None, device) -> LossFn:
    """The symbolic loss, or its parameterized form with fixed learned weights."""
    if weights is None:
        return make_loss(tree, kind)
    import torch

    from search_engine.expr.weighted import make_weighted_loss

    weighted = make_weighted_loss(tree, kind)
    w = torch.tensor(weights, dtype=torch.float32, device=device)
    return lambda outputs, targets: weighted(w, outputs, targets)
