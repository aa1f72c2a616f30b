"""P loss trees as one first-order program: the losses and d(loss)/d(f) in one forward sweep.

`population.training.population_loss` trains P candidates at once. Running each member's tree as ordinary
autograd ops makes every one of its tiny (B, C) ops pay for recording a graph node and for a
backward node, and that bookkeeping, not the arithmetic, dominated a population training step.
Here the trees run without autograd as *dual numbers*: every node carries its value and its
elementwise derivative with respect to its member's prediction f (each tree is an elementwise
function of (y, f); y and the constants have derivative zero, f has derivative one). The custom
autograd Function `PopulationTreeLoss` returns the (P,) losses (summed over the last dim, mean
over the batch, as `population_loss` reduces them) and keeps only d(loss element)/d(f) (P, B, C)
for its backward, which is one multiplication. The softmax / one-hot inputs stay outside, in
ordinary autograd, so gradients reach the logits through torch's own softmax.

The program is compiled once into straight-line Python source (one function for all P members),
because at these sizes Python's own per-node overhead (closures, small objects, dict look-ups)
cost as much as the torch ops. Whether a derivative is zero, a known constant or a tensor depends
only on the tree, so it is decided while compiling: a subtree without f gets no derivative code
at all (autograd would send it no gradient), f has the constant derivative 1 (multiplying by it
is free), add(f, f) has 2, so e.g. square(sub(f, y)) costs one op for its derivative, not three.
Python numbers are never passed to torch ops next to tensors (each would be wrapped into a tensor
and copied on every call); constants are 0-d tensors built once per dtype and device.

The rules follow PyTorch autograd's conventions at the edges, so that both paths give the same
gradients there (tested against autograd): abs'(x) = sign(x), so 0 at 0 (and, like torch.sign,
at NaN); the clamp inside the protected log / sqrt passes the gradient only where its input is
> eps (torch 2.14's clamp with a number bound: 0 at eps itself, below it and at NaN); minimum /
maximum split it equally at ties and pass it to both inputs where one is NaN; sign' = 0; the
protected division is differentiated as autograd chains div and hypot. A stopped gradient is a
factor 0 multiplied into the derivative from below, so 0 times a non-finite derivative stays
NaN, as autograd's zero gradient times it does.

One difference is inherent to forward mode, which multiplies each local derivative into the
derivative from below, where autograd multiplies it into the gradient from above (starting at
1/B). With huge values a derivative can therefore overflow here (e.g. d(f*f) = f + f at
f = 3e38 in float32) where autograd's smaller products do not, and a gradient that autograd
stops at a clamp / min / max and then multiplies only by finite factors can here meet an infinite
factor above it (an infinite sibling value) and become NaN. Both need infinite or overflowing
intermediates under a finite loss; they then give inf/NaN where autograd gives a finite gradient,
never the other way round (tested), so such a member is reported diverged. sign, whose
derivative is zero everywhere, is kept out of the second case: its zero contribution (NaN where
the derivative below it is not finite) is added at the end, never multiplied from above. The loss
*values* are computed by the same ops as `expr.compile.compile_tree` / `expr.weighted.compile_weighted`,
so they are equal bit for bit, and a non-finite loss stays non-finite.

Higher derivatives: the saved derivative is a constant. When the backward runs with
`create_graph=True`, the derivative is recomputed with autograd recording it (the same code, now
differentiable), so second derivatives are those of the forward-mode expression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from search_engine.expr import primitives as P
from search_engine.expr.compile import compile_tree, constant_dtype
from search_engine.expr.dual import Code, Sym
from search_engine.expr.tree import Node
from search_engine.expr.weighted import compile_weighted, edge_count

# ------------------------------------------------------------------ compiling


@dataclass(frozen=True)
class _Member:
    """What compiling one member needs besides the node: its f row, edge weights, live subtrees."""

    f: str
    weights: list[float] | None
    live: frozenset[int]  # ids of the subtrees that mention y or f (the rest are constants)


def _live_subtrees(tree: Node) -> frozenset[int]:
    """Ids of the subtrees of `tree` that mention y or f, in one walk (asking each node is quadratic)."""
    live: set[int] = set()

    def visit(node: Node) -> bool:
        found = [visit(c) for c in node.children]  # every child, so that all are recorded
        if node.op in (P.TARGET, P.PREDICTION) or any(found):
            live.add(id(node))
            return True
        return False

    visit(tree)
    return frozenset(live)


def _compile(code: Code, node: Node, position: int, member: _Member) -> tuple[Sym, int]:
    """(`node`'s symbol, prefix position after its subtree); positions as `parameterized` counts them."""
    weights = member.weights
    if id(node) not in member.live:  # a constant subtree (a constant leaf too): one 0-d tensor
        end = position + node.size()
        inner = None if weights is None else weights[position : end - 1]  # its own edges' weights
        return Sym(code.subtree(node, inner), None), end
    if node.op == P.TARGET:
        return Sym("y", None), position + 1
    if node.op == P.PREDICTION:  # (without derivatives, no derivative code is generated at all)
        return Sym(member.f, 1.0 if code.need_deriv else None), position + 1
    children, nxt = [], position + 1
    for child in node.children:
        sym, after = _compile(code, child, nxt, member)
        if weights is not None:  # the child's output is scaled by its incoming edge's weight
            w = weights[nxt - 1]
            sym = Sym(code.let(f"torch.mul({code.const(w)}, {sym.value})"), code.times(sym.deriv, w))
        children.append(sym)
        nxt = after
    return P.PRIMITIVES[node.op].derivative(code, *children), nxt


def _member_lines(code: Code, tree: Node, weights: list[float] | None, p: int) -> tuple[str, str]:
    """Emit member p's code; (expression of its values, expression of its derivative), each (B, C)."""
    code.leaks = []
    root, _ = _compile(code, tree, 0, _Member(f"f{p}", weights, _live_subtrees(tree)))
    deriv = root.deriv
    for leak in code.leaks:
        deriv = code.let(f"torch.add({code.tensor(0.0 if deriv is None else deriv)}, {leak})")
    deriv = code.tensor(0.0 if deriv is None else deriv)
    return f"shaped({root.value}, shape)", f"shaped({deriv}, shape)"


def _source(trees: Sequence[Node], weights: Sequence[list[float] | None], need_deriv: bool) -> tuple[str, Code]:
    """The generated function `program(y, f, K, shape)` -> (values (P, B, C), derivatives or None)."""
    code = Code(need_deriv, P.PROTECT_EPS)
    values, derivs = [], []
    for p, (tree, w) in enumerate(zip(trees, weights, strict=True)):
        value, deriv = _member_lines(code, tree, w, p)
        values.append(value)
        derivs.append(deriv)
    head = [f"({''.join(f'f{p}, ' for p in range(len(trees)))}) = f.unbind(0)"]
    if code.constants:
        head.append(f"({''.join(f'c{i}, ' for i in range(len(code.constants)))}) = K")
    tail = [f"values = torch.stack([{', '.join(values)}])"]
    tail.append(f"derivs = torch.stack([{', '.join(derivs)}])" if need_deriv else "derivs = None")
    body = "\n    ".join(head + code.lines + tail + ["return values, derivs"])
    return f"def program(y, f, K, shape):\n    {body}\n", code


def shaped(t: Tensor, shape: torch.Size) -> Tensor:
    """t broadcast to `shape` (a view; skipped when it already has it: a view op costs a dispatch too)."""
    return t if t.shape == shape else t.expand(shape)


_NAMESPACE = {"torch": torch, "shaped": shaped, "EPS": P.PROTECT_EPS,
              "tanh_backward": torch.ops.aten.tanh_backward.default}


class _Compiled:
    """One generated function and its constants, built per dtype and device on first use."""

    def __init__(self, source: str, code: Code) -> None:
        namespace = dict(_NAMESPACE)
        exec(compile(source, "<expr.program>", "exec"), namespace)  # our own generated source
        self.fn = namespace["program"]
        self.source = source
        self._specs = code.constants
        self._constants: dict = {}

    def constants(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
        key = (dtype, device)
        if key not in self._constants:
            self._constants[key] = tuple(self._build(spec, dtype, device) for spec in self._specs)
        return self._constants[key]

    @staticmethod
    def _build(spec, dtype: torch.dtype, device: torch.device) -> Tensor:
        """A constant's 0-d tensor; a constant subtree is evaluated by the autograd path's own code."""
        if isinstance(spec, float):
            return torch.full((), spec, dtype=dtype, device=device)
        node, weights = spec
        zero = torch.zeros((), dtype=dtype, device=device)
        with torch.no_grad():
            if weights is None:
                return compile_tree(node)(zero, zero)
            return compile_weighted(node)(torch.tensor(weights, dtype=dtype, device=device), zero, zero)


class TreeProgram:
    """P trees (optionally with fixed edge weights) compiled into one dual-number program."""

    def __init__(self, trees: Sequence[Node], weights: Sequence[Tensor | Sequence[float] | None] | None = None) -> None:
        ws = list(weights) if weights is not None else [None] * len(trees)
        self.trees = list(trees)
        self.weights = [_floats(t, w) for t, w in zip(self.trees, ws, strict=True)]
        self._compiled: dict[bool, _Compiled] = {}

    def _program(self, need_deriv: bool) -> _Compiled:
        if need_deriv not in self._compiled:
            self._compiled[need_deriv] = _Compiled(*_source(self.trees, self.weights, need_deriv))
        return self._compiled[need_deriv]

    def evaluate(self, y: Tensor, f: Tensor, need_deriv: bool = True) -> tuple[Tensor, Tensor | None]:
        """Elementwise values (P, B, C) of member p on (y, f[p]) and, with need_deriv, d(value)/d(f)."""
        if len(f) != len(self.trees):
            raise ValueError(f"expected predictions for {len(self.trees)} members, got {len(f)}")
        shape = torch.broadcast_shapes(y.shape, f.shape[1:])
        program = self._program(need_deriv)
        constants = program.constants(constant_dtype(y, f), f.device)
        return program.fn(y, f, constants, shape)


def _floats(tree: Node, weights: Tensor | Sequence[float] | None) -> list[float] | None:
    """Fixed edge weights as Python floats (read once), checked against the tree's edge count."""
    if weights is None:
        return None
    floats = [float(w) for w in (weights.tolist() if isinstance(weights, Tensor) else weights)]
    if len(floats) != edge_count(tree):
        raise ValueError(f"tree has {edge_count(tree)} edges, got {len(floats)} weights")
    return floats


# ------------------------------------------------------------------ autograd


class PopulationTreeLoss(torch.autograd.Function):
    """(f (P, B, C), y (B, C), program) -> (P,) mean losses (and the saved derivative, not differentiable)."""

    @staticmethod
    def forward(f: Tensor, y: Tensor, program: TreeProgram) -> tuple[Tensor, Tensor]:
        values, deriv = program.evaluate(y, f, need_deriv=True)
        return values.sum(dim=-1).mean(dim=-1), deriv

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        f, y, program = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no (P, B, C) zeros for the derivative output's unused gradient
        ctx.save_for_backward(f, y, output[1])
        ctx.program = program

    @staticmethod
    def backward(ctx, grad: Tensor | None, _unused: Tensor | None):
        if grad is None:  # (gradients are not materialized: nothing flowed into the losses)
            return None, None, None
        f, y, deriv = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: the saved derivative is a constant; recompute it with autograd
            # recording, so that the gradient returned here can be differentiated again.
            _, deriv = ctx.program.evaluate(y, f, need_deriv=True)
        return deriv * (grad / f.shape[1]).view(-1, 1, 1), None, None  # the batch mean's 1/B


def population_values(program: TreeProgram, y: Tensor, f: Tensor) -> Tensor:
    """(P,) mean losses of the program's members on f (P, B, C) against y (B, C), differentiable in f."""
    if torch.is_grad_enabled() and f.requires_grad:
        return PopulationTreeLoss.apply(f, y, program)[0]
    values, _ = program.evaluate(y, f, need_deriv=False)
    return values.sum(dim=-1).mean(dim=-1)
