"""Compiling a loss tree into an elementwise torch function of (y, f)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from search_engine.expr import primitives as P
from search_engine.expr.tree import Node

#: An elementwise loss: (y, f) -> values, broadcast shape of y and f.
Elementwise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def constant_dtype(y: torch.Tensor, f: torch.Tensor) -> torch.dtype:
    """The dtype constants take: that of y and f together, or the default float for integer inputs."""
    dtype = torch.promote_types(y.dtype, f.dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def _compile_node(node: Node) -> Elementwise:
    """One closure per node, built once; calling it only runs torch ops (vmap-safe)."""
    if node.op == P.TARGET:
        return lambda y, f: y
    if node.op == P.PREDICTION:
        return lambda y, f: f
    if node.op in P.CONSTANTS:
        value = P.CONSTANTS[node.op]
        # A 0-d tensor (not a Python float) so unary torch ops on constant subtrees work.
        return lambda y, f: torch.full((), value, dtype=constant_dtype(y, f), device=f.device)
    fn = P.PRIMITIVES[node.op].torch_fn
    if len(node.children) == 1:
        (a,) = (_compile_node(c) for c in node.children)
        return lambda y, f: fn(a(y, f))
    a, b = (_compile_node(c) for c in node.children)
    return lambda y, f: fn(a(y, f), b(y, f))


def compile_tree(node: Node) -> Elementwise:
    """A torch function computing the tree elementwise on (y, f).

    The result always has the broadcast shape of y and f, even when the tree is constant.
    """
    body = _compile_node(node)

    def elementwise(y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        out = body(y, f)
        shape = torch.broadcast_shapes(y.shape, f.shape)
        # Constant subtrees are 0-d; expand is a view, so this costs nothing for the usual case.
        return out if out.shape == shape else out.expand(shape)

    return elementwise
