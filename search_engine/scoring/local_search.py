"""Local search: refine a symbolic loss's edge weights by meta-gradients through unrolled training.

EvoMAL's second stage. One meta step (`meta_objective`): build the task's model from a seed,
take K differentiable SGD steps on training batches with the weighted loss, then measure the
task loss (cross-entropy or MSE) of the updated model on a validation batch. The gradient of
that number with respect to the loss weights flows back through every inner update (a full
second-order meta-gradient, not a first-order approximation); Adam applies it.

The inner loop is functional: the model's parameters are a dict of tensors, the model is run
with `torch.func.functional_call`, inner gradients come from `torch.autograd.grad(...,
create_graph=True)`, and each update builds new tensors, so the whole unrolled run is one
autograd graph from the weights to the meta-loss. The inner optimizer is SGD with exactly
`torch.optim.SGD`'s semantics for `TrainingConfig` (lr, momentum, Nesterov, weight decay;
plain SGD with EvoMAL's defaults). Buffers (BatchNorm statistics) are passed to every call as
fresh copies: the model stays in training mode, so batch statistics are used throughout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.func import functional_call

from search_engine.config import LocalSearchConfig, TrainingConfig
from search_engine.expr.losses import baseline_loss
from search_engine.expr.tree import Node
from search_engine.expr.weighted import (
    ParameterizedLoss,
    WeightedLossFn,
    compile_weighted,
    edge_count,
    init_weights,
    make_weighted_loss,
)
from search_engine.runtime import interrupt
from search_engine.tasks.training import batch_indices

if TYPE_CHECKING:  # annotations only; any object with splits, kind and new_model(seed) works
    from search_engine.scoring.protocol import GradientProbe
    from search_engine.tasks.task import Task

# The parameterized-loss API is re-exported, so `search_engine.scoring.local_search` is the one import for both.
__all__ = [
    "LocalSearchResult", "ParameterizedLoss", "compile_weighted", "edge_count", "init_weights",
    "local_search", "make_weighted_loss", "meta_objective", "sgd_update", "step_seed", "unroll_sgd",
]

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

# Independent random streams of one meta step, mixed into its seeds.
_MODEL_STREAM, _TRAIN_STREAM, _VAL_STREAM, _DROPOUT_STREAM = range(4)


@dataclass(frozen=True)
class LocalSearchResult:
    """Outcome of `local_search`: the learned and the initial edge weights, and the trace."""

    weights: tuple[float, ...]
    initial_weights: tuple[float, ...]
    meta_losses: tuple[float | None, ...]  # per meta step, at the weights before its update; None if non-finite
    skipped_steps: int  # meta steps whose loss or gradient was non-finite (no update made)
    seconds: float


def step_seed(seed: int, step: int, stream: int) -> int:
    """A deterministic seed for one random stream of one meta step (a 63-bit integer mix)."""
    mixed = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB) % 2**64
    mixed ^= mixed >> 31
    return mixed % 2**63


@contextmanager
def _seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNG of `device` (for dropout) and restore it afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _batch(x: Tensor, y: Tensor, batch_size: int, steps: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """`steps` mini-batches of (x, y) drawn by index from a generator seeded with `seed`."""
    gen = torch.Generator().manual_seed(seed)
    order = batch_indices(len(x), batch_size, steps, gen, x.device)  # (steps, B)
    return [(x[idx], y[idx]) for idx in order]


def _forward(model: nn.Module, params: Params, buffers: Params, x: Tensor) -> Tensor:
    """The model's outputs with `params`; buffers are copied so BatchNorm's updates touch no graph input."""
    fresh = {name: b.clone() for name, b in buffers.items()}
    return functional_call(model, (params, fresh), (x,))


def _grads(loss: Tensor, params: Params, create_graph: bool) -> list[Tensor]:
    """d loss / d params, zeros for parameters the loss does not use (or a loss with no graph)."""
    tensors = list(params.values())
    if not loss.requires_grad:
        return [torch.zeros_like(p) for p in tensors]
    return list(
        torch.autograd.grad(loss, tensors, create_graph=create_graph, allow_unused=True, materialize_grads=True)
    )


def sgd_update(
    params: Params, grads: Sequence[Tensor], momenta: Params | None, training: TrainingConfig
) -> tuple[Params, Params | None]:
    """One functional SGD step with `torch.optim.SGD`'s semantics; returns (params, momentum buffers).

    d = g + wd * p; buf = d on the first step, else momentum * buf + d; the step direction is
    d + momentum * buf (Nesterov) or buf; p <- p - lr * direction. `momenta` is None before the
    first step and stays None without momentum.
    """
    new_params: Params = {}
    new_momenta: Params = {}
    for (name, p), g in zip(params.items(), grads, strict=True):
        d = g + training.weight_decay * p if training.weight_decay else g
        direction = d
        if training.momentum:
            buf = d if momenta is None else training.momentum * momenta[name] + d
            new_momenta[name] = buf
            direction = d + training.momentum * buf if training.nesterov else buf
        new_params[name] = p - training.lr * direction
    return new_params, (new_momenta if training.momentum else None)


def unroll_sgd(
    model: nn.Module, params: Params, buffers: Params, loss_fn: LossFn,
    batches: Sequence[tuple[Tensor, Tensor]], training: TrainingConfig, *, create_graph: bool = True,
) -> Params:
    """Parameters after one SGD step per batch on `loss_fn(outputs, targets)`, as new tensors.

    With `create_graph`, the result stays differentiable with respect to everything the losses
    depend on (the loss weights), through every step.
    """
    momenta = None
    with torch.enable_grad():
        for x, y in batches:
            loss = loss_fn(_forward(model, params, buffers, x), y)
            params, momenta = sgd_update(params, _grads(loss, params, create_graph), momenta, training)
    return params


def _initial_state(model: nn.Module, dtype: torch.dtype) -> tuple[Params, Params]:
    """The model's parameters (detached leaves requiring grad) and buffers, floats cast to `dtype`."""
    model.to(dtype=dtype)
    params = {name: p.detach().requires_grad_(True) for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    return params, buffers


def normalized(loss: WeightedLossFn, probe: GradientProbe | None) -> WeightedLossFn:
    """`loss` times its differentiable gradient scale at `probe` (the tuned protocol), or `loss` itself.

    The scale is a function of the weights, so the meta-gradient sees that multiplying the whole
    loss by a constant changes nothing: local search can move the loss's shape, not its size.
    """
    if probe is None:
        return loss

    def weighted(w: Tensor, outputs: Tensor, targets: Tensor) -> Tensor:
        scale = probe.differentiable_scale(lambda o, t: loss(w, o, t))
        return loss(w, outputs, targets) * scale

    return weighted


def _objective(
    task: Task, loss: WeightedLossFn, weights: Tensor, cfg: LocalSearchConfig, training: TrainingConfig,
    seed: int, step: int,
) -> Tensor:
    """`meta_objective` with the weighted loss already compiled."""
    s = task.splits
    model = task.new_model(step_seed(seed, step, _MODEL_STREAM))
    model.train()
    dtype = s.x_train.dtype if s.x_train.is_floating_point() else torch.get_default_dtype()
    params, buffers = _initial_state(model, dtype)
    train_batches = _batch(s.x_train, s.y_train, cfg.batch_size, cfg.inner_steps, step_seed(seed, step, _TRAIN_STREAM))
    ((x_val, y_val),) = _batch(s.x_val, s.y_val, cfg.batch_size, 1, step_seed(seed, step, _VAL_STREAM))
    with _seeded_rng(step_seed(seed, step, _DROPOUT_STREAM), s.x_train.device):
        params = unroll_sgd(
            model, params, buffers, lambda out, tgt: loss(weights, out, tgt), train_batches, training,
            create_graph=weights.requires_grad,
        )
        outputs = _forward(model, params, buffers, x_val)
    value = baseline_loss(task.kind)(outputs, y_val)
    # The inner loop's parameter leaves require grad; only the weights' graph is the caller's business.
    return value if weights.requires_grad else value.detach()


def meta_objective(
    task: Task, tree: Node, weights: Tensor, cfg: LocalSearchConfig, training: TrainingConfig, seed: int, step: int
) -> Tensor:
    """The meta-loss of meta step `step`: task loss on a validation batch after K inner SGD steps.

    Deterministic in (seed, step): the model is `task.new_model(step_seed(seed, step, 0))`, the
    K training batches and the validation batch (cfg.batch_size each) come from generators
    seeded with streams 1 and 2, dropout from stream 3. Floating model parameters take the dtype
    of `task.splits.x_train`. Differentiable with respect to `weights` by `torch.autograd`.
    """
    return _objective(task, make_weighted_loss(tree, task.kind), weights, cfg, training, seed, step)


def _meta_gradient(loss: Tensor, weights: Tensor) -> Tensor:
    """d loss / d weights; zeros when the loss does not depend on them."""
    if not loss.requires_grad:
        return torch.zeros_like(weights)
    (grad,) = torch.autograd.grad(loss, [weights], allow_unused=True, materialize_grads=True)
    return grad


def _as_floats(t: Tensor) -> tuple[float, ...]:
    """A 1-d tensor as a tuple of Python floats."""
    return tuple(float(v) for v in t.detach().cpu().tolist())


def local_search(
    task: Task, tree: Node, cfg: LocalSearchConfig, training: TrainingConfig, seed: int,
    probe: GradientProbe | None = None,
) -> LocalSearchResult:
    """Refine the edge weights of `tree` with cfg.meta_steps Adam steps (lr cfg.meta_lr) on `meta_objective`.

    Starts from `init_weights(tree, seed)`; meta step t uses `meta_objective(..., seed, t)`. A
    step whose meta-loss or meta-gradient is not finite makes no update (the last finite
    weights are kept) and is counted in `skipped_steps`. With `probe` (the tuned protocol) the loss
    is `normalized`: its overall scale is not local search's to learn.
    """
    start = time.perf_counter()
    loss = normalized(make_weighted_loss(tree, task.kind), probe)
    x = task.splits.x_train
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    initial = init_weights(tree, seed).to(device=x.device, dtype=dtype)  # (E,)
    weights = initial.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([weights], lr=cfg.meta_lr)
    meta_losses: list[float | None] = []
    skipped = 0
    for step in range(cfg.meta_steps):
        interrupt.check(step)
        value = _objective(task, loss, weights, cfg, training, seed, step)
        grad = _meta_gradient(value, weights)
        if not bool(torch.isfinite(value) & torch.isfinite(grad).all()):
            meta_losses.append(None)
            skipped += 1
            continue
        meta_losses.append(float(value.detach()))
        last = weights.detach().clone()
        weights.grad = grad
        optimizer.step()
        if not bool(torch.isfinite(weights).all()):  # defensive: never leave non-finite weights
            with torch.no_grad():
                weights.copy_(last)
            skipped += 1
    return LocalSearchResult(
        weights=_as_floats(weights), initial_weights=_as_floats(initial), meta_losses=tuple(meta_losses),
        skipped_steps=skipped, seconds=time.perf_counter() - start,
    )
