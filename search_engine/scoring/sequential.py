"""Scoring candidate losses: the rejection screen, then fitness = validation metric after training.

The search loop talks to an evaluator only through `evaluate(trees) -> list[Outcome]` and its
`chunk_size` (how many candidates it prefers per call; the loop checks for a stop request between
calls, and the training loops check it every few steps via `interrupt`). A batched evaluator that trains a whole population as one program can replace this
sequential one without touching the loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from search_engine.config import ExperimentConfig
from search_engine.expr.losses import make_loss
from search_engine.expr.tree import Node
from search_engine.scoring import protocol
from search_engine.scoring.outcome import TRAINING_DIVERGED, Outcome  # noqa: F401 (also read from here)
from search_engine.scoring.rejection import fixed_subset, initial_outputs, screen
from search_engine.tasks.task import Task
from search_engine.tasks.training import LossFn, metric_from_outputs, predict, train


class SequentialEvaluator:
    """Evaluates candidates one after another on the task's device.

    Under the tuned protocol (`scoring.protocol`) `config.training.lr` becomes the baseline's best
    rate, chosen when the evaluator is made unless `rate_record` brings the choice made before
    for the same search (a resumed search, another worker), and every loss is trained scaled to
    the baseline's gradient size (`scale_of`).
    """

    chunk_size = 1

    def __init__(self, task: Task, config: ExperimentConfig, rate_record: dict | None = None,
                 reason: str | None = None):
        self.task = task
        self.plan_reason = reason  # why the evaluation plan chose this path (`plan.plan_record` reports it)
        rej = config.rejection
        splits = task.splits
        idx = fixed_subset(len(splits.x_train), rej.samples, config.seed).to(task.device)
        self._screen_targets = splits.y_train[idx]
        self._screen_start = initial_outputs(len(idx), task.info.n_outputs, config.seed, task.device)
        self._screen_lr = config.training.lr  # the screen's Adam is scale-free: it keeps the configured rate
        self.probe = protocol.GradientProbe.for_task(task, config) if protocol.is_tuned(config) else None
        self._given = config
        # `rate_record`: the choice made before for this search; else the rate is chosen on first use.
        self._rate_record = rate_record if protocol.same_rate_choice(rate_record, config) else None
        self._config: ExperimentConfig | None = None

    @property
    def rate_record(self) -> dict:
        """How the search's training rate was chosen (`protocol.search_rate`); chosen on first use."""
        if self._rate_record is None:
            self._rate_record = protocol.search_rate(self.task, self._given)[1]
        return self._rate_record

    @property
    def config(self) -> ExperimentConfig:
        """The configuration candidates are scored with: the given one at the search's rate."""
        if self._config is None:
            self._config = protocol.tuned_config(self._given, self.rate_record["lr"])
        return self._config

    def scale_of(self, loss_fn: LossFn) -> float | None:
        """The factor a loss is trained with: its gradient scale under the tuned protocol, else None."""
        return None if self.probe is None else self.probe.scale(loss_fn)

    def screen(self, tree: Node) -> str | None:
        """The rejection protocol; None means the candidate may be trained."""
        rej = self.config.rejection
        if not rej.enabled:
            return None
        return screen(
            tree, self.task.kind, self._screen_targets, self._screen_start,
            steps=rej.steps, lr=self._screen_lr,
        )

    def fitness(self, tree: Node, weights: tuple[float, ...] | None = None) -> Outcome:
        """Train the task model from the search's fixed seed and measure the validation metric.

        With `weights`, the loss is the parameterized form of `tree` with those edge weights.
        """
        s, cfg = self.task.splits, self.config
        model = self.task.new_model(cfg.seed)
        loss_fn = loss_for(tree, self.task.kind, weights, self.task.device)
        scale = self.scale_of(loss_fn)
        if not train(model, protocol.scaled(loss_fn, scale), s.x_train, s.y_train, cfg.training, data_seed=cfg.seed):
            return Outcome(None, TRAINING_DIVERGED, weights, scale)
        outputs = predict(model, s.x_val)
        value = metric_from_outputs(outputs, s.y_val, self.task.kind)
        if not math.isfinite(value):
            return Outcome(None, TRAINING_DIVERGED, weights, scale)
        return Outcome(value, None, weights, scale, tiebreak(outputs, s.y_val, self.task.kind))

    def refine(self, tree: Node) -> Outcome:
        """Local search on the edge weights by unrolled meta-gradients, then fitness with them."""
        from search_engine.scoring.local_search import local_search

        cfg = self.config
        found = local_search(self.task, tree, cfg.local_search, cfg.training, seed=cfg.seed, probe=self.probe)
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


def tiebreak(outputs, targets, kind: str) -> float | None:
    """The validation cross-entropy of classification outputs (None for regression, whose MSE is
    continuous already, and where it is not finite)."""
    if kind != "classification":
        return None
    from search_engine.expr.losses import baseline_loss

    value = float(baseline_loss(kind)(outputs, targets))
    return value if math.isfinite(value) else None


def loss_for(tree: Node, kind: str, weights: tuple[float, ...] | None, device) -> LossFn:
    """The symbolic loss, or its parameterized form with fixed learned weights."""
    if weights is None:
        return make_loss(tree, kind)
    import torch

    from search_engine.expr.weighted import make_weighted_loss

    weighted = make_weighted_loss(tree, kind)
    w = torch.tensor(weights, dtype=torch.float32, device=device)
    return lambda outputs, targets: weighted(w, outputs, targets)
