"""Parameterized symbolic losses: a learnable weight on every edge of a loss tree (EvoMAL).

A tree with N nodes has E = N - 1 edges, one into each non-root node. `weights[i]` scales the
output of the node at prefix position i + 1 (the order of `Node.walk()`; the root is position
0) before its parent uses it. For ``mul(-1, log(f))``, prefix [mul, -1, log, f], the value is
``w0 * (-1) * w1 * log(w2 * f)``; with all weights 1 it is exactly the symbolic loss.

The compiled functions take the weights as an argument (no hidden state), use only torch ops
on tensors (no `.item()`, no branching on values, no in-place ops), and so run under
`torch.func.vmap` / `torch.func.grad`, e.g. over a stacked (P, E) population of weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from search_engine.catalog import KINDS
from search_engine.expr import primitives as P
from search_engine.expr.compile import constant_dtype
from search_engine.expr.losses import REDUCTIONS, reduce_batch, tree_inputs
from search_engine.expr.tree import Node

#: (weights (E,), y, f) -> elementwise values with the broadcast shape of y and f.
WeightedElementwise = Callable[[Tensor, Tensor, Tensor], Tensor]
#: (weights (E,), outputs, targets) -> loss; a scalar, or (B,) for reduction "none".
WeightedLossFn = Callable[[Tensor, Tensor, Tensor], Tensor]

#: Standard deviation of the noise around 1 in `init_weights`.
INIT_NOISE = 1e-3

# A node body reads the per-edge weights (a tuple of 0-d tensors, already in the inputs'
# dtype) and the inputs; it returns the node's output before its own edge weight is applied.
_Body = Callable[[tuple[Tensor, ...], Tensor, Tensor], Tensor]


def edge_count(tree: Node) -> int:
    """Number of edges E = nodes - 1: the length of the weight vector of `tree`."""
    return tree.size() - 1


def init_weights(tree: Node, seed: int) -> Tensor:
    """Initial edge weights (E,) float32: 1 + 0.001 * N(0, 1), drawn from a generator seeded with `seed`."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(edge_count(tree), generator=gen, dtype=torch.float32)  # (E,)
    return 1.0 + INIT_NOISE * noise


def _leaf_body(op: str) -> _Body:
    """The body of a terminal: y, f, or a constant as a 0-d tensor of the inputs' dtype/device."""
    if op == P.TARGET:
        return lambda w, y, f: y
    if op == P.PREDICTION:
        return lambda w, y, f: f
    value = P.CONSTANTS[op]
    return lambda w, y, f: torch.full((), value, dtype=constant_dtype(y, f), device=f.device)


def _weighted_child(body: _Body, edge: int) -> _Body:
    """A child's body whose output is scaled by the weight of its incoming edge."""
    return lambda w, y, f: w[edge] * body(w, y, f)


def _compile_subtree(node: Node, position: int) -> tuple[_Body, int]:
    """(body of `node`, prefix position just after its subtree); `node` sits at `position`.

    Positions are counted here, while walking, exactly as `Node.walk()` orders the nodes.
    """
    if node.is_terminal:
        return _leaf_body(node.op), position + 1
    children: list[_Body] = []
    nxt = position + 1
    for child in node.children:
        # The child sits at prefix position `nxt`; its incoming edge is weight nxt - 1.
        body, after = _compile_subtree(child, nxt)
        children.append(_weighted_child(body, nxt - 1))
        nxt = after
    fn = P.PRIMITIVES[node.op].torch_fn
    if len(children) == 1:
        (a,) = children
        return (lambda w, y, f: fn(a(w, y, f))), nxt
    a, b = children
    return (lambda w, y, f: fn(a(w, y, f), b(w, y, f))), nxt


def compile_weighted(tree: Node) -> WeightedElementwise:
    """A torch function (weights, y, f) -> the weighted tree computed elementwise.

    `weights` is (E,) (or (..., E) batched by vmap); it is cast to the inputs' dtype, so the
    result has their dtype, and always the broadcast shape of y and f.
    """
    body, end = _compile_subtree(tree, 0)
    n_edges = end - 1  # == edge_count(tree)

    def weighted(weights: Tensor, y: Tensor, f: Tensor) -> Tensor:
        if weights.shape != (n_edges,):
            raise ValueError(f"expected {n_edges} edge weights of shape ({n_edges},), got {tuple(weights.shape)}")
        w = weights.to(constant_dtype(y, f)).unbind(0)  # E 0-d tensors
        out = body(w, y, f)
        shape = torch.broadcast_shapes(y.shape, f.shape)
        # Constant subtrees are 0-d; expand is a view.
        return out if out.shape == shape else out.expand(shape)

    return weighted


def _check_options(kind: str, reduction: str) -> None:
    """Reject an unknown task kind or reduction, as `expr.losses.make_loss` does."""
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(KINDS)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {', '.join(REDUCTIONS)}")


def make_weighted_loss(tree: Node, kind: str, reduction: str = "mean") -> WeightedLossFn:
    """A loss (weights, outputs, targets) -> Tensor with `expr.losses.make_loss`'s conventions.

    classification: the tree sees f = softmax(logits) and y = one-hot targets; regression: raw
    outputs and targets. Values are summed over the last dim, then reduced over the batch.
    With all weights 1 it equals `make_loss(tree, kind, reduction)`.
    """
    _check_options(kind, reduction)
    elementwise = compile_weighted(tree)

    def loss(weights: Tensor, outputs: Tensor, targets: Tensor) -> Tensor:
        y, f = tree_inputs(outputs, targets, kind)  # (B, C) each
        per_sample = elementwise(weights, y, f).sum(dim=-1)  # (B,)
        return reduce_batch(per_sample, reduction)

    return loss


class ParameterizedLoss(nn.Module):
    """A symbolic loss with learnable edge weights, usable as an ordinary `loss(outputs, targets)`.

    `weights` defaults to `init_weights(tree, seed)`; pass a (E,) tensor to start elsewhere.
    """

    def __init__(
        self, tree: Node, kind: str, reduction: str = "mean", *, weights: Tensor | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        self.tree = tree
        self.kind = kind
        self.reduction = reduction
        initial = init_weights(tree, seed) if weights is None else torch.as_tensor(weights).detach().clone()
        if initial.shape != (edge_count(tree),):
            raise ValueError(f"tree has {edge_count(tree)} edges, got weights of shape {tuple(initial.shape)}")
        self.weights = nn.Parameter(initial)  # (E,)
        self._loss = make_weighted_loss(tree, kind, reduction)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The weighted loss of `outputs` against `targets`."""
        return self._loss(self.weights, outputs, targets)
