"""The dual-number population loss (`expr.program`) equals the autograd path it replaces.

Values are compared bit for bit (non-finite ones included), gradients with respect to the
logits / outputs to float rounding, for every primitive at its edges (0, the protected eps,
ties, NaN, infinities), for many random trees, with and without edge weights, and through a
second differentiation.
"""

from __future__ import annotations

import random

import pytest
import torch

from search_engine.evolution import operators as gp
from search_engine.expr import primitives as P
from search_engine.expr.compile import compile_tree
from search_engine.expr.program import TreeProgram, population_values
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, Node, parse
from search_engine.expr.weighted import compile_weighted
from search_engine.population.training import population_inputs, population_loss

from ..conftest import nan_tree

pytestmark = pytest.mark.usefixtures("one_thread")

DTYPES = (torch.float32, torch.float64)
# Gradient tolerances: relative, and absolute relative to the member's largest gradient (the
# softmax backward subtracts terms of that size).
RTOL = {torch.float32: 1e-5, torch.float64: 1e-12}
ATOL = {torch.float32: 1e-6, torch.float64: 1e-14}


# ------------------------------------------------------------------ the two paths


def _autograd_path(trees, kind, outputs, targets, weights=None):
    """(values (P,), d sum(values) / d outputs) with every tree as ordinary autograd ops."""
    x = outputs.detach().requires_grad_(True)
    y, f = population_inputs(x, targets, kind)
    ws = weights or [None] * len(trees)
    parts = [compile_tree(t)(y[0], fp) if w is None else compile_weighted(t)(w, y[0], fp)
             for t, w, fp in zip(trees, ws, f.unbind(0), strict=True)]
    values = torch.stack(parts).sum(dim=-1).mean(dim=-1)
    (grad,) = torch.autograd.grad(values.sum(), x, allow_unused=True, materialize_grads=True)
    return values.detach(), grad


def _program_path(trees, kind, outputs, targets, weights=None):
    """The same through `population_loss` (the tree program)."""
    x = outputs.detach().requires_grad_(True)
    values = population_loss(trees, kind, weights)(x, targets)
    (grad,) = torch.autograd.grad(values.sum(), x, allow_unused=True, materialize_grads=True)
    return values.detach(), grad


def _assert_same_values(got, want):
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def _assert_close_grads(got, want, dtype, members):
    """Member by member: the same non-finite entries, the finite ones equal to rounding."""
    for p in members:
        a, b = want[p], got[p]
        finite = a[torch.isfinite(a)]
        scale = max(1.0, finite.abs().max().item()) if finite.numel() else 1.0
        torch.testing.assert_close(b, a, rtol=RTOL[dtype], atol=ATOL[dtype] * scale, equal_nan=True,
                                   msg=lambda m, p=p: f"member {p}: {m}")


def _random_trees(seed: int, n: int, max_height: int = 5) -> list[Node]:
    rng = random.Random(seed)
    trees = [gp.random_tree(rng, rng.randint(1, max_height), rng.choice(["grow", "full"])) for _ in range(n)]
    used = {node.op for t in trees for _, node in t.walk()}
    assert set(P.PRIMITIVES) <= used  # every rule is exercised
    return trees


# ------------------------------------------------------------------ inputs


EDGES = [0.0, -0.0, 1e-8, -1e-8, P.PROTECT_EPS, -P.PROTECT_EPS, 2e-7, 1.0, -1.0, 2.0, -3.0, 1e-30, 50.0, -50.0]


def _regression_inputs(p: int, dtype, seed: int = 0, b: int = 32, k: int = 2):
    """Outputs (P, B, K) with the edge values in column 0, ties with the targets below them."""
    gen = torch.Generator().manual_seed(seed)
    outputs = torch.randn(b, k, generator=gen, dtype=dtype) * 3
    targets = torch.randn(b, k, generator=gen, dtype=dtype)
    n = len(EDGES)
    outputs[:n, 0] = torch.tensor(EDGES, dtype=dtype)
    outputs[n : 2 * n, 0] = targets[n : 2 * n, 0]  # f == y: min/max ties, sub(f, y) == 0
    outputs[-1] = targets[-1]
    return outputs.expand(p, b, k).clone(), targets


def _classification_inputs(p: int, dtype, seed: int = 0, b: int = 32, c: int = 5):
    """Logits (P, B, C) with some rows uniform (ties between classes) and some very confident."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(p, b, c, generator=gen, dtype=dtype) * 3
    logits[:, 0] = 0.0  # softmax 1/C everywhere
    logits[:, 1, 0] = 40.0  # other probabilities underflow towards (not to) 0
    logits[:, 2, 1] = -120.0  # one probability below the protected eps
    return logits, torch.randint(0, c, (b,), generator=gen)


# ------------------------------------------------------------------ tests


def _primitive_trees() -> list[Node]:
    """Every primitive on f, on (f, y), (y, f), (f, f), with constants and on a sub(f, y) child."""
    f, y, one, minus = Node("f"), Node("y"), Node("1"), Node("-1")
    diff = Node("sub", (f, y))
    trees = []
    for op in P.BINARY:
        for a, b in [(f, y), (y, f), (f, f), (f, one), (minus, f), (diff, f), (diff, diff)]:
            trees.append(Node(op, (a, b)))
    for op in P.UNARY:
        trees += [Node(op, (f,)), Node(op, (diff,)), Node(op, (Node("mul", (f, y)),))]
    return trees


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_primitive_matches_autograd_at_its_edges(dtype):
    # One operation deep, forward and reverse mode multiply the same factors, so even NaN and
    # infinite inputs must give the same gradients, entry for entry.
    trees = _primitive_trees()
    outputs, targets = _regression_inputs(len(trees), dtype)
    outputs[:, -2, 0] = float("nan")
    outputs[:, -3, 0] = float("inf")
    outputs[:, -4, 0] = -float("inf")
    outputs[:, -5, 0] = 1e30
    want_v, want_g = _autograd_path(trees, "regression", outputs, targets)
    got_v, got_g = _program_path(trees, "regression", outputs, targets)
    _assert_same_values(got_v, want_v)
    _assert_close_grads(got_g, want_g, dtype, range(len(trees)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_protected_clamp_stops_the_gradient_at_exactly_eps(dtype):
    # torch's clamp(min=eps) passes the gradient only where its input is > eps (0 at eps itself).
    trees = [parse("log(f)"), parse("sqrt(f)"), parse("log(sub(f, y))")]
    outputs = torch.tensor([P.PROTECT_EPS, -P.PROTECT_EPS, 2e-7, 0.5e-7], dtype=dtype).view(1, 4, 1).repeat(3, 1, 1)
    targets = torch.zeros(4, 1, dtype=dtype)
    _, want = _autograd_path(trees, "regression", outputs, targets)
    _, got = _program_path(trees, "regression", outputs, targets)
    assert (want[:, :2] == 0).all() and (want[:, 2] != 0).all()
    _assert_close_grads(got, want, dtype, range(3))


@pytest.mark.parametrize("op", ["min", "max"])
def test_min_max_ties_split_the_gradient_equally(op):
    # torch gives each input half the gradient where they are equal; a NaN input passes it to both.
    trees = [parse(f"{op}(f, y)"), parse(f"{op}(f, mul(f, f))")]
    outputs = torch.tensor([0.5, 1.0, 0.0, float("nan")], dtype=torch.float64).view(1, 4, 1).repeat(2, 1, 1)
    targets = torch.tensor([0.5, 1.0, 0.0, 0.0], dtype=torch.float64).view(4, 1)
    _, want = _autograd_path(trees, "regression", outputs, targets)
    _, got = _program_path(trees, "regression", outputs, targets)
    assert want[0, :3, 0].tolist() == [0.5 / 4] * 3  # f == y: half of d(mean)/d(value) = 1/4
    _assert_close_grads(got, want, torch.float64, [0, 1])


@pytest.mark.parametrize("kind", ["classification", "regression"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_trees_match_autograd(kind, dtype):
    trees = _random_trees(seed=7 if kind == "regression" else 8, n=250)
    inputs = _regression_inputs if kind == "regression" else _classification_inputs
    outputs, targets = inputs(len(trees), dtype)
    want_v, want_g = _autograd_path(trees, kind, outputs, targets)
    got_v, got_g = _program_path(trees, kind, outputs, targets)
    _assert_same_values(got_v, want_v)
    finite = [p for p in range(len(trees)) if torch.isfinite(want_v[p])]
    assert len(finite) > len(trees) // 2
    _assert_close_grads(got_g, want_g, dtype, finite)


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_inputs_keep_values_and_never_invent_a_finite_gradient(dtype):
    # Where a derivative overflows (or a stopped gradient meets an infinite factor above it),
    # forward mode can give inf/NaN where autograd's gradient is finite (see expr.program); it
    # must never be the other way round for a member that is alive (finite loss), and finite
    # gradients must agree.
    trees = _random_trees(seed=11, n=250)
    outputs, targets = _regression_inputs(len(trees), dtype)
    big = 3e38 if dtype == torch.float32 else 1e300
    outputs[:, :6, 1] = torch.tensor([1e20, -1e20, big, -big, 1e12, -1e12], dtype=dtype)
    want_v, want_g = _autograd_path(trees, "regression", outputs, targets)
    got_v, got_g = _program_path(trees, "regression", outputs, targets)
    _assert_same_values(got_v, want_v)
    assert (~torch.isfinite(got_v)).sum() > 10  # the test does reach the non-finite regime
    for p in range(len(trees)):
        if not torch.isfinite(want_v[p]):
            continue
        ours = torch.isfinite(got_g[p])
        assert torch.isfinite(want_g[p][ours]).all(), f"member {p}"
        _assert_close_grads(torch.where(ours, got_g[p], 0)[None], torch.where(ours, want_g[p], 0)[None], dtype, [0])


@pytest.mark.parametrize("kind", ["classification", "regression"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fixed_edge_weights_match_the_weighted_autograd_path(kind, dtype):
    trees = _random_trees(seed=3, n=120, max_height=4)
    gen = torch.Generator().manual_seed(1)
    weights = [None if i % 3 == 0 else torch.randn(t.size() - 1, generator=gen) * 0.5 + 1.0
               for i, t in enumerate(trees)]
    weights[1] = torch.zeros(trees[1].size() - 1)  # a zero weight cuts a subtree off
    inputs = _regression_inputs if kind == "regression" else _classification_inputs
    outputs, targets = inputs(len(trees), dtype)
    want_v, want_g = _autograd_path(trees, kind, outputs, targets, weights)
    got_v, got_g = _program_path(trees, kind, outputs, targets, weights)
    _assert_same_values(got_v, want_v)
    finite = [p for p in range(len(trees)) if torch.isfinite(want_v[p])]
    _assert_close_grads(got_g, want_g, dtype, finite)


def test_nan_tree_stays_non_finite_and_leaves_the_others_alone():
    trees = [CROSS_ENTROPY, nan_tree(), SQUARED_ERROR]
    logits, targets = _classification_inputs(3, torch.float32)
    want_v, want_g = _autograd_path(trees, "classification", logits, targets)
    got_v, got_g = _program_path(trees, "classification", logits, targets)
    assert torch.isfinite(got_v).tolist() == [True, False, True]
    _assert_same_values(got_v, want_v)
    _assert_close_grads(got_g, want_g, torch.float32, [0, 2])


def test_sign_zero_gradient_is_not_multiplied_from_above():
    # tanh(sign(f) * S) with S = 2^256 = inf in float32: the loss is tanh(inf) = 1, and autograd's
    # gradient 0 (sign sends zeros down, whatever comes from above), not 0 * inf.
    big = parse("add(1, 1)")
    for _ in range(8):
        big = Node("square", (big,))
    positive = [parse("add(f, 1)"), parse("mul(add(f, 1), add(f, 1))")]  # derivative 1, and a tensor
    trees = [Node("tanh", (Node("mul", (Node("sign", (a,)), big)),)) for a in positive]
    logits, targets = _classification_inputs(2, torch.float32)
    want_v, want_g = _autograd_path(trees, "classification", logits, targets)
    got_v, got_g = _program_path(trees, "classification", logits, targets)
    assert torch.isfinite(got_v).all()
    _assert_same_values(got_v, want_v)
    _assert_close_grads(got_g, want_g, torch.float32, [0, 1])


def test_second_derivatives_through_create_graph():
    # The saved derivative is a constant; a double backward recomputes it on the graph.
    trees = [CROSS_ENTROPY, SQUARED_ERROR, parse("tanh(div(f, sub(y, f)))"), parse("mul(sqrt(f), log(add(f, y)))")]
    logits, targets = _classification_inputs(len(trees), torch.float64, b=8)
    direction = torch.randn_like(logits)

    def gradient_and_hvp(loss):
        x = logits.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(x, targets).sum(), x, create_graph=True)
        (hvp,) = torch.autograd.grad((grad * direction).sum(), x)
        return grad.detach(), hvp

    def autograd_loss(x, t):
        y, f = population_inputs(x, t, "classification")
        return torch.stack([compile_tree(tr)(y[0], fp) for tr, fp in zip(trees, f.unbind(0))]).sum(-1).mean(-1)

    want_g, want_h = gradient_and_hvp(autograd_loss)
    got_g, got_h = gradient_and_hvp(population_loss(trees, "classification"))
    torch.testing.assert_close(got_g, want_g, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got_h, want_h, rtol=1e-10, atol=1e-12)


def test_weights_that_require_grad_are_differentiated():
    trees = [CROSS_ENTROPY, parse("mul(-1, mul(y, log(add(f, square(f)))))")]
    weights = [torch.full((t.size() - 1,), 1.1, requires_grad=True) for t in trees]
    logits, targets = _classification_inputs(2, torch.float32)
    values = population_loss(trees, "classification", weights)(logits, targets)
    got = torch.autograd.grad(values.sum(), weights)
    y, f = population_inputs(logits, targets, "classification")
    want_values = torch.stack([compile_weighted(t)(w, y[0], fp).sum(-1).mean() for t, w, fp in zip(trees, weights, f)])
    want = torch.autograd.grad(want_values.sum(), weights)
    for g, w in zip(got, want, strict=True):
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, w)


def test_values_without_grad_and_program_checks():
    trees = _random_trees(seed=5, n=60, max_height=4)
    logits, targets = _classification_inputs(len(trees), torch.float32)
    want_v, _ = _autograd_path(trees, "classification", logits, targets)
    with torch.no_grad():
        _assert_same_values(population_loss(trees, "classification")(logits, targets), want_v)
    y, f = population_inputs(logits, targets, "classification")
    program = TreeProgram(trees)
    _assert_same_values(population_values(program, y[0], f), want_v)  # f needs no grad here
    with pytest.raises(ValueError, match="members"):
        program.evaluate(y[0], f[:3])
    with pytest.raises(ValueError, match="edges"):
        TreeProgram([CROSS_ENTROPY], [torch.ones(2)])
