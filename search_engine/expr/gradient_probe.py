"""Gradient equivalence of losses on a fixed probe batch (AutoLoss-Zero, Li et al., CVPR 2022).

Training sees a loss only through its gradient with respect to the model's outputs, so two losses
whose gradients agree there train alike and are one candidate for the search's cache, whatever
their formulas: square(sub(f, y)) plus any function of y alone, say. The gradient is taken with
respect to the outputs as `expr.losses` feeds them to a tree (classification: the logits, whose
softmax is f; regression: f itself), through `make_loss`'s reduction (summed over the classes or
outputs, averaged over the batch). For classification a gradient that agrees with respect to f
agrees with respect to the logits too, and a term that only adds the same amount to every class's
gradient of f (f itself: its sum over the classes is 1) drops out, as it does in training.

The probe batch is drawn once from a fixed seed in float64 on the CPU, so a signature is the same
in every process, and a search with a given configuration and seed keeps its history.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from search_engine.catalog import KINDS
from search_engine.expr.losses import LossFn, baseline_loss, make_loss
from search_engine.expr.tree import Node
from search_engine.expr.weighted import make_weighted_loss

#: Seed of the probe batch: fixed, so signatures never change between runs or processes.
PROBE_SEED = 2022
#: Samples in the probe batch; with PROBE_CLASSES classes, 640 points at which two gradients must agree.
PROBE_ROWS = 64
PROBE_CLASSES = 10
#: Standard deviation of the random logits (softmax rows from near uniform to confident, none so
#: confident that the protected log's clamp at 1e-7 is reached) and of regression outputs and targets.
PROBE_SPREAD = 2.0
#: Gradients are compared to this fraction of their largest entry: float64 rounding of two ways of
#: computing one function stays far below it, a real difference far above.
RELATIVE_TOLERANCE = 1e-6
#: A gradient with no entry above this is zero: what float64 leaves of a gradient that cancels (the
#: softmax's f summed over the classes), and far below any step a learning rate could take.
ZERO_GRADIENT = 1e-12


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(KINDS)}")


@functools.lru_cache(maxsize=len(KINDS))
def probe_batch(kind: str) -> tuple[Tensor, Tensor]:
    """(outputs, targets) of the probe batch, float64: classification (B, C) logits and (B,) class
    indices; regression (B,) outputs and targets, any reals. Shared: never modify them."""
    _check_kind(kind)
    gen = torch.Generator().manual_seed(PROBE_SEED)
    if kind == "classification":
        logits = torch.randn(PROBE_ROWS, PROBE_CLASSES, generator=gen, dtype=torch.float64) * PROBE_SPREAD  # (B, C)
        return logits, torch.randint(0, PROBE_CLASSES, (PROBE_ROWS,), generator=gen)  # (B,)
    outputs = torch.randn(PROBE_ROWS, generator=gen, dtype=torch.float64) * PROBE_SPREAD  # (B,)
    return outputs, torch.randn(PROBE_ROWS, generator=gen, dtype=torch.float64) * PROBE_SPREAD  # (B,)


def output_gradient(loss_fn: LossFn, kind: str) -> Tensor | None:
    """d loss / d outputs on the probe batch (the shape of its outputs, float64), or None when the
    loss or its gradient is not finite there. `loss_fn(outputs, targets)` must return a scalar."""
    outputs, targets = probe_batch(kind)
    x = outputs.clone().requires_grad_(True)
    with torch.enable_grad():
        value = loss_fn(x, targets)
        if value.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar (reduction 'mean'), got shape {tuple(value.shape)}")
        grad = torch.autograd.grad(value, x, allow_unused=True)[0] if value.requires_grad else None
    grad = torch.zeros_like(outputs) if grad is None else grad.detach()  # a loss that ignores the outputs
    if not (torch.isfinite(value) and torch.isfinite(grad).all()):
        return None
    return grad


def _loss_of(loss: Node | LossFn, kind: str, weights: Sequence[float] | None) -> LossFn:
    """A tree (with optional edge weights) or a loss function, as a loss function of (outputs, targets)."""
    if isinstance(loss, Node):
        if weights is None:
            return make_loss(loss, kind)
        weighted, w = make_weighted_loss(loss, kind), torch.tensor(list(weights), dtype=torch.float64)
        return lambda outputs, targets: weighted(w, outputs, targets)
    if not callable(loss):
        raise TypeError(f"loss must be an expression tree or a function (outputs, targets) -> loss, "
                        f"got {type(loss).__name__}")
    if weights is not None:
        raise ValueError("weights: edge weights apply to an expression tree, not to a loss function")
    return loss


def _signature_of(grad: Tensor, kind: str) -> str:
    """A hash of `grad` rounded to RELATIVE_TOLERANCE of its order of magnitude (which it includes,
    so that c * grad and grad differ for c != 1)."""
    scale = float(grad.abs().max())
    if scale <= ZERO_GRADIENT:
        body = "zero"
    else:
        exponent = math.floor(math.log10(scale))
        steps = torch.round(grad / (10.0**exponent * RELATIVE_TOLERANCE)).to(torch.int64)
        body = f"{exponent}:" + ",".join(map(str, steps.flatten().tolist()))
    return hashlib.sha256(f"{kind}|{body}".encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=4096)
def gradient_signature(tree: Node, kind: str, up_to_scale: bool = False) -> str | None:
    """A string equal for trees whose gradients agree on the probe batch of task `kind` (to
    RELATIVE_TOLERANCE), different otherwise; None when the tree is not finite there.

    With `up_to_scale`, gradients that agree after dividing each by its norm agree: c * L and L
    (c > 0) are one loss, as they are to a fitness that scales every loss to one gradient size
    (`scoring.protocol`'s tuned protocol).
    """
    grad = output_gradient(make_loss(tree, kind), kind)
    if grad is None:
        return None
    if not up_to_scale:
        return _signature_of(grad, kind)
    norm = float(grad.norm())
    return _signature_of(grad / norm if norm > ZERO_GRADIENT else grad, f"{kind}|unit")


@functools.lru_cache(maxsize=len(KINDS))
def _baseline_gradient(kind: str) -> Tensor:
    grad = output_gradient(baseline_loss(kind), kind)
    if grad is None:  # cannot happen with the probe batch's moderate values; say so if it ever does
        raise RuntimeError(f"the {kind} baseline is not finite on the probe batch")
    return grad


def rescales_baseline(loss: Node | Callable, kind: str, weights: Sequence[float] | None = None) -> float | None:
    """c > 0 when the loss's gradient is c times the baseline's on the probe batch (cross-entropy
    for classification, squared error for regression, as `expr.losses.baseline_loss` computes them),
    else None: the loss then trains as the baseline does at c times its learning rate.

    `loss` is a tree, with `weights` its edge weights (see `expr.weighted`) or None for all ones,
    or a function (outputs, targets) -> scalar loss taking float64 outputs.
    """
    _check_kind(kind)
    grad = output_gradient(_loss_of(loss, kind, weights), kind)
    if grad is None:
        return None
    reference = _baseline_gradient(kind)
    c = float((grad * reference).sum() / (reference * reference).sum())  # least squares
    if not (math.isfinite(c) and c > 0):
        return None
    misfit = float((grad - c * reference).abs().max())
    return c if misfit <= RELATIVE_TOLERANCE * float(grad.abs().max()) else None
