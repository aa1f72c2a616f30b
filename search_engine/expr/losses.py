"""Turning a loss expression tree into a training loss over a batch.

A tree is an elementwise function of the target y and the prediction f. For classification,
f is the softmax of the model's logits and y the one-hot target; for regression, f and y are
the outputs and targets themselves. The elementwise values are summed over the last dimension
(classes or outputs) and then reduced over the batch.

Everything here is written to run under `torch.func.vmap` (no `.item()`, no branching on tensor
values, no in-place ops), so a batched trainer can evaluate a population of models at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from search_engine.catalog import KINDS, baseline_name
from search_engine.expr.compile import compile_tree
from search_engine.expr.tree import KNOWN_LOSSES, Node

#: (outputs, targets) -> loss; a scalar, or one value per sample for reduction "none".
LossFn = Callable[[Tensor, Tensor], Tensor]

REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")

#: The known loss each kind of task is usually trained with (the meta-testing baseline).
BASELINE_TREES: dict[str, Node] = {kind: KNOWN_LOSSES[baseline_name(kind)] for kind in KINDS}


def _check_kind(kind: str) -> None:
    """Reject a task kind other than classification/regression."""
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(KINDS)}")


def _check_reduction(reduction: str) -> None:
    """Reject a reduction other than mean/sum/none."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {', '.join(REDUCTIONS)}")


def _check_class_targets(outputs: Tensor, targets: Tensor) -> None:
    """Logits must be (batch, classes) and targets (batch,) integer class indices."""
    if outputs.dim() != 2:
        raise ValueError(
            f"classification outputs must be logits of shape (batch, classes), got {tuple(outputs.shape)}"
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ValueError(f"classification targets must be integer class indices, got dtype {targets.dtype}")
    if targets.shape != outputs.shape[:1]:
        raise ValueError(
            f"classification targets must have shape (batch,) = {tuple(outputs.shape[:1])}, "
            f"got {tuple(targets.shape)}"
        )


def _classification_inputs(outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(y, f): one-hot targets and softmax probabilities, both (batch, classes) in outputs' dtype."""
    _check_class_targets(outputs, targets)
    f = torch.softmax(outputs, dim=-1)
    # Comparison with arange rather than F.one_hot: one_hot range-checks its input, which
    # synchronizes with the GPU on every call and is data-dependent control flow under vmap.
    classes = torch.arange(outputs.shape[-1], device=outputs.device)
    y = (targets.unsqueeze(-1) == classes).to(outputs.dtype)
    return y, f


def _drop_trailing_one(shape: torch.Size) -> torch.Size:
    """(B, 1) -> (B,); any other shape unchanged. Used to match (B,) targets with (B, 1) outputs."""
    return shape[:-1] if len(shape) == 2 and shape[-1] == 1 else shape


def _matched_regression(outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(targets, outputs) as (batch, K) of one dtype; (B,) and (B, 1) are reconciled by reshape."""
    if outputs.dim() not in (1, 2):
        raise ValueError(
            f"regression outputs must have shape (batch,) or (batch, K), got {tuple(outputs.shape)}"
        )
    if targets.shape != outputs.shape:
        if _drop_trailing_one(targets.shape) != _drop_trailing_one(outputs.shape):
            raise ValueError(
                f"regression targets of shape {tuple(targets.shape)} do not match outputs of shape "
                f"{tuple(outputs.shape)}"
            )
        targets = targets.reshape(outputs.shape)
    if outputs.dim() == 1:  # one output per sample: make the summed "last dim" that output
        outputs, targets = outputs.unsqueeze(-1), targets.unsqueeze(-1)
    return targets.to(outputs.dtype), outputs


def tree_inputs(outputs: Tensor, targets: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """(y, f) as a tree sees them for a task `kind`, both (batch, classes or K) in outputs' dtype.

    classification: one-hot targets and softmax probabilities; regression: targets and outputs,
    (B,) and (B, 1) reconciled. Shared by `make_loss` and the parameterized losses.
    """
    _check_kind(kind)
    prepare = _classification_inputs if kind == "classification" else _matched_regression
    return prepare(outputs, targets)


def reduce_batch(per_sample: Tensor, reduction: str) -> Tensor:
    """Reduce (batch,) values over the batch: "mean", "sum", or "none" (returned as is)."""
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def make_loss(node: Node, kind: str, reduction: str = "mean") -> LossFn:
    """A loss (outputs, targets) -> Tensor that applies `node` elementwise.

    classification: outputs are logits (B, C), targets int class indices (B,); the tree sees
    f = softmax(outputs) and y = one_hot(targets). regression: outputs (B,) or (B, K), targets
    of the same shape ((B,) vs (B, 1) is reshaped); the tree sees y = targets, f = outputs.
    The values are summed over the last dim and reduced over the batch: "mean", "sum", or
    "none" for a (B,) tensor. So make_loss(SQUARED_ERROR, "regression") is K * F.mse_loss.
    """
    _check_kind(kind)
    _check_reduction(reduction)
    elementwise = compile_tree(node)

    def loss(outputs: Tensor, targets: Tensor) -> Tensor:
        y, f = tree_inputs(outputs, targets, kind)
        return reduce_batch(elementwise(y, f).sum(dim=-1), reduction)

    return loss


def baseline_loss(kind: str, reduction: str = "mean") -> LossFn:
    """The standard loss of a task kind, with `make_loss`'s signature and input conventions.

    classification: F.cross_entropy on logits. regression: squared error averaged over the
    outputs of each sample, so "mean" equals F.mse_loss exactly and "none" gives (B,) values.
    """
    _check_kind(kind)
    _check_reduction(reduction)
    if kind == "classification":

        def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
            _check_class_targets(outputs, targets)
            return F.cross_entropy(outputs, targets.long(), reduction=reduction)

        return cross_entropy

    def mse(outputs: Tensor, targets: Tensor) -> Tensor:
        y, f = _matched_regression(outputs, targets)
        return reduce_batch(F.mse_loss(f, y, reduction="none").mean(dim=-1), reduction)

    return mse
