"""The shape of a learned loss: its per-sample value along simple one-dimensional slices.

Classification (C classes, the true class is class 0, y the one-hot target), on a grid of
`grid` points strictly inside (0, 1), ``p[k] = (k + 1) / (grid + 1)``:

- ``loss_true[k]``: the per-sample loss when the TRUE class has probability ``p[k]`` and the
  remaining mass is spread evenly over the other classes,
  ``f = [p, (1 - p)/(C - 1), ..., (1 - p)/(C - 1)]``. Cross-entropy gives ``-log(p)``.
- ``loss_wrong[k]``: the per-sample loss when ONE WRONG class has probability ``q = p[k]`` and
  the true class holds all the rest, the other wrong classes none:
  ``f = [1 - q, q, 0, ..., 0]``. Cross-entropy gives ``-log(1 - q)``.

Regression (one output): ``loss[k]`` is the per-sample loss at residual ``r = f - y`` with the
target fixed (``y = target``, default 0) and ``f = y + r``, for ``r`` on a grid of `grid` points
spanning ``[-residual_range, residual_range]``. Squared error gives ``r^2``.

"Per-sample loss" is the tree applied elementwise and summed over classes (outputs), as in
`expr.losses.make_loss` with reduction "none"; learned edge weights scale node outputs as in the
exporters (``weights[i]`` scales the node at prefix position ``i + 1``); a network loss is its
network applied to every pair (f_i, y_i) and summed likewise. Values are computed in float64;
non-finite ones are reported as None.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from search_engine.catalog import KINDS
from search_engine.expr import primitives as P
from search_engine.expr.compile import compile_tree
from search_engine.expr.network import NetworkLoss, network_values
from search_engine.expr.tree import Node, parse


def weighted_elementwise(
    tree: Node, weights: Sequence[float] | None, y: torch.Tensor, f: torch.Tensor
) -> torch.Tensor:
    """The tree on (y, f) elementwise, node i + 1's output scaled by weights[i] (None: unweighted)."""
    if weights is None:
        return compile_tree(tree)(y, f)
    if len(weights) != tree.size() - 1:
        raise ValueError(f"expected {tree.size() - 1} weights (one per edge), got {len(weights)}")
    w = torch.as_tensor(list(weights), dtype=f.dtype, device=f.device)

    def value(node: Node, i: int) -> tuple[torch.Tensor, int]:
        if node.op == P.TARGET:
            out, nxt = y, i + 1
        elif node.op == P.PREDICTION:
            out, nxt = f, i + 1
        elif node.op in P.CONSTANTS:
            out, nxt = torch.full((), P.CONSTANTS[node.op], dtype=f.dtype, device=f.device), i + 1
        else:
            args, nxt = [], i + 1
            for child in node.children:
                arg, nxt = value(child, nxt)
                args.append(arg)
            out = P.PRIMITIVES[node.op].torch_fn(*args)
        return (out if i == 0 else w[i - 1] * out), nxt

    out = value(tree, 0)[0]
    shape = torch.broadcast_shapes(y.shape, f.shape)
    return out if out.shape == shape else out.expand(shape)


def _network_elementwise(net: NetworkLoss):
    """(y, f) -> the network's value on every pair, in f's dtype (the loss shape's float64)."""

    def values(y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        matrices = [torch.tensor(m, dtype=f.dtype) for m in net.layers]
        return network_values(matrices, y.expand_as(f), f, net.activation, net.output)

    return values


def _resolve(spec_or_tree: Any, weights: Sequence[float] | None, kind: str | None):
    """(elementwise (y, f) -> values, kind) from a LearnedLossSpec, a NetworkLoss, a Node or a prefix
    string."""
    if isinstance(spec_or_tree, NetworkLoss):  # a network loss on its own: the kind is given
        if weights is not None:
            raise ValueError("a network loss has no edge weights to override")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        return _network_elementwise(spec_or_tree), kind
    network = getattr(spec_or_tree, "network", None)
    if network is not None:  # a LearnedLossSpec of a network loss
        if weights is not None:
            raise ValueError("a network loss has no edge weights to override")
        if kind is not None and kind != spec_or_tree.kind:
            raise ValueError(f"kind {kind!r} contradicts the spec's kind {spec_or_tree.kind!r}")
        return _network_elementwise(network), spec_or_tree.kind
    if isinstance(spec_or_tree, str):
        spec_or_tree = parse(spec_or_tree)
    if isinstance(spec_or_tree, Node):
        if kind is None:
            raise ValueError("kind ('classification' or 'regression') is required when passing a tree")
        tree = spec_or_tree
    elif hasattr(spec_or_tree, "expression") and hasattr(spec_or_tree, "kind"):  # a LearnedLossSpec
        tree = parse(spec_or_tree.expression)
        if kind is not None and kind != spec_or_tree.kind:
            raise ValueError(f"kind {kind!r} contradicts the spec's kind {spec_or_tree.kind!r}")
        kind = spec_or_tree.kind
        weights = spec_or_tree.weights if weights is None else weights
    else:
        raise TypeError(
            f"expected a LearnedLossSpec, a Node or a prefix string, got {type(spec_or_tree).__name__}"
        )
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return (lambda y, f: weighted_elementwise(tree, weights, y, f)), kind


def _finite_list(values: torch.Tensor) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.tolist()]


def loss_shape(
    spec_or_tree: Any,
    weights: Sequence[float] | None = None,
    n_classes: int = 10,
    grid: int = 51,
    *,
    kind: str | None = None,
    target: float = 0.0,
    residual_range: float = 3.0,
) -> dict[str, Any]:
    """The per-sample loss along the slices described in the module docstring.

    `spec_or_tree`: a LearnedLossSpec (its kind and weights are used; `weights` overrides them;
    a network loss's network), or a Node / prefix string / NetworkLoss together with `kind`.
    Returns, for classification, ``{"kind", "n_classes", "p", "loss_true", "loss_wrong"}``
    (``loss_wrong[k]`` is at ``q = p[k]``); for regression ``{"kind", "target", "residual", "loss"}``.
    """
    elementwise, kind = _resolve(spec_or_tree, weights, kind)
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 2:
        raise ValueError(f"grid must be an integer >= 2, got {grid!r}")
    dt = torch.float64
    if kind == "regression":
        if not (math.isfinite(residual_range) and residual_range > 0):
            raise ValueError(f"residual_range must be a positive number, got {residual_range!r}")
        # Symmetric, with the ends and (for odd grids) 0 exactly on the grid.
        r = residual_range * (torch.arange(grid, dtype=dt) * 2 / (grid - 1) - 1)
        y = torch.full((grid, 1), float(target), dtype=dt)
        with torch.no_grad():
            loss = elementwise(y, y + r.unsqueeze(-1)).sum(dim=-1)
        return {"kind": kind, "target": float(target), "residual": r.tolist(), "loss": _finite_list(loss)}
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    p = torch.arange(1, grid + 1, dtype=dt) / (grid + 1)
    y = torch.zeros(grid, n_classes, dtype=dt)
    y[:, 0] = 1.0
    f_true = ((1 - p) / (n_classes - 1)).unsqueeze(-1).repeat(1, n_classes)
    f_true[:, 0] = p
    f_wrong = torch.zeros(grid, n_classes, dtype=dt)
    f_wrong[:, 0] = 1 - p
    f_wrong[:, 1] = p
    with torch.no_grad():
        loss_true = elementwise(y, f_true).sum(dim=-1)
        loss_wrong = elementwise(y, f_wrong).sum(dim=-1)
    return {
        "kind": kind,
        "n_classes": n_classes,
        "p": p.tolist(),
        "loss_true": _finite_list(loss_true),
        "loss_wrong": _finite_list(loss_wrong),
    }


def _columns(shape: dict[str, Any]) -> list[str]:
    if shape.get("kind") == "regression":
        return ["residual", "loss"]
    return ["p", "loss_true", "loss_wrong"]


def write_csv(shape: dict[str, Any], path: str | Path) -> Path:
    """Write a `loss_shape` result as CSV (header row; None as an empty cell); return the path."""
    columns = _columns(shape)
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in zip(*(shape[c] for c in columns), strict=True):
            writer.writerow(["" if v is None else repr(float(v)) for v in row])
    return path


def write_png(shape: dict[str, Any], path: str | Path) -> Path:
    """Plot a `loss_shape` result to a PNG; needs matplotlib (an optional dependency)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise RuntimeError(
            "writing a PNG needs matplotlib, which is not installed; install it (pip install matplotlib) "
            "or use write_csv"
        ) from exc
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    nan = float("nan")  # None (non-finite) plots as a gap
    if shape.get("kind") == "regression":
        ax.plot(shape["residual"], [nan if v is None else v for v in shape["loss"]], label="loss")
        ax.set_xlabel(f"residual f - y (y = {shape.get('target', 0.0):g})")
    else:
        ax.plot(shape["p"], [nan if v is None else v for v in shape["loss_true"]], label="true class has p")
        ax.plot(
            shape["p"], [nan if v is None else v for v in shape["loss_wrong"]], label="one wrong class has p"
        )
        ax.set_xlabel("probability p")
    ax.set_ylabel("per-sample loss")
    ax.legend()
    ax.grid(True, alpha=0.3)
    path = Path(path)
    fig.savefig(path, format="png")
    return path
