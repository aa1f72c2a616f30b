"""ML3's work on the task (torch): the loss network's initial weights, a meta step's objective, blocks
of meta steps and the network's fitness. The strategy object that drives it is `methods.ml3`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from search_engine.config import ExperimentConfig, LocalSearchConfig
from search_engine.expr.network import NetworkLoss, flat_network_loss, make_network_loss, network_widths
from search_engine.methods.ml3_state import Block, BlockOutcome
from search_engine.runtime import interrupt
from search_engine.scoring.local_search import _meta_gradient, _objective, step_seed
from search_engine.tasks.training import LossFn, evaluate_metric, train

_INIT_STREAM = 4  # the loss network's initial weights (streams 0-3 are a meta step's, see local_search)


def widths_of(config: ExperimentConfig) -> tuple[int, ...]:
    return network_widths(config.ml3.hidden_units, config.ml3.hidden_layers)


def initial_weights(widths: tuple[int, ...], seed: int) -> Tensor:
    """Kaiming-normal weights, layer after layer: N(0, 2 / fan_in), from a generator seeded by `seed`.

    Returns the flat (P,) vector in `NetworkLoss.flat` order (torch's kaiming_normal_ default: fan-in, ReLU gain).
    """
    gen = torch.Generator().manual_seed(step_seed(seed, 0, _INIT_STREAM))
    parts = [torch.randn(n_out * n_in, generator=gen) * math.sqrt(2.0 / n_in)
             for n_in, n_out in zip(widths[:-1], widths[1:])]
    return torch.cat(parts)


def meta_loss(task, weights: Tensor, config: ExperimentConfig, step: int) -> Tensor:
    """Meta step `step`'s objective: validation task loss after ml3.inner_steps SGD steps with the network
    loss of flat `weights` (differentiable with respect to them); deterministic in (config.seed, step)."""
    m = config.ml3
    inner = LocalSearchConfig(meta_steps=m.meta_steps, inner_steps=m.inner_steps, meta_lr=m.meta_lr,
                              batch_size=m.batch_size)
    loss = flat_network_loss(widths_of(config), task.kind)
    return _objective(task, loss, weights, inner, config.training, config.seed, step)


def fitness_of(task, config: ExperimentConfig, loss_fn: LossFn) -> float | None:
    """EvoMAL's fitness of a loss: validation metric of a model trained with it from config.seed; None if it diverged."""
    s = task.splits
    model = task.new_model(config.seed)
    if not train(model, loss_fn, s.x_train, s.y_train, config.training, data_seed=config.seed):
        return None
    value = evaluate_metric(model, s.x_val, s.y_val, task.kind)
    return value if math.isfinite(value) else None


class _Learner:
    """The loss network's weights (a leaf tensor) and their Adam optimizer, to and from an ML3State."""

    def __init__(self, block: Block, config: ExperimentConfig, dtype: torch.dtype, device: torch.device):
        self.config = config
        self.weights = torch.tensor(block.weights, dtype=dtype, device=device).requires_grad_(True)  # (P,)
        self.optimizer = torch.optim.Adam([self.weights], lr=config.ml3.meta_lr)
        if block.adam is not None:
            saved = self.optimizer.state_dict()
            saved["state"] = {0: {
                "step": torch.tensor(float(block.adam["step"])),
                "exp_avg": torch.tensor(block.adam["exp_avg"], dtype=dtype, device=device),
                "exp_avg_sq": torch.tensor(block.adam["exp_avg_sq"], dtype=dtype, device=device),
            }}
            self.optimizer.load_state_dict(saved)

    def step(self, task, step: int) -> None:
        """One meta step; no update when its meta-loss or gradient (or the updated weights) are not finite."""
        value = meta_loss(task, self.weights, self.config, step)
        grad = _meta_gradient(value, self.weights)
        if not bool(torch.isfinite(value) & torch.isfinite(grad).all()):
            return
        last = self.weights.detach().clone()
        self.weights.grad = grad
        self.optimizer.step()
        if not bool(torch.isfinite(self.weights).all()):  # defensive: never keep non-finite weights
            with torch.no_grad():
                self.weights.copy_(last)

    def adam_state(self) -> dict | None:
        adam = self.optimizer.state_dict()["state"].get(0)
        return None if adam is None else {
            "step": float(adam["step"]), "exp_avg": adam["exp_avg"].cpu().tolist(),
            "exp_avg_sq": adam["exp_avg_sq"].cpu().tolist(),
        }


class Runner:
    """ML3's evaluator: runs blocks of meta steps on the task, and scores losses as EvoMAL does."""

    chunk_size = 1

    def __init__(self, task, config: ExperimentConfig):
        self.task, self.config = task, config
        x = task.splits.x_train
        self.dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()

    def run_block(self, block: Block) -> BlockOutcome:
        """The block's meta steps, then the network's fitness; `interrupt.Stopped` from inside drops it."""
        learner, m = _Learner(block, self.config, self.dtype, self.task.device), self.config.ml3
        for step in range(block.report * m.report_every, min((block.report + 1) * m.report_every, m.meta_steps)):
            interrupt.check(step)
            learner.step(self.task, step)
        weights = learner.weights.detach().cpu().tolist()
        net = NetworkLoss.from_flat(weights, widths_of(self.config))
        fitness = fitness_of(self.task, self.config, make_network_loss(net, self.task.kind, device=self.task.device))
        return BlockOutcome(tuple(weights), learner.adam_state(), fitness)
