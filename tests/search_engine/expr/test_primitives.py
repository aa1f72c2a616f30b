"""The primitive table: torch, SymPy and LaTeX meanings of every operation agree."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy
import torch

from search_engine.expr import primitives as P

#: Protected edges: zero, values either side of the clamp, negatives, and huge magnitudes.
GRID = [0.0, 1e-9, -1e-9, 1e-7, 0.5, -0.5, 1.0, -1.0, -2.5, 3.0, 1e6, -1e6, 1e30, -1e30]


def _log_ref(a: float) -> float:
    return math.log(max(abs(a), P.PROTECT_EPS))


def _sqrt_ref(a: float) -> float:
    return math.sqrt(max(abs(a), P.PROTECT_EPS))


def _sign_ref(a: float) -> float:
    return 0.0 if a == 0 else math.copysign(1.0, a)


#: Independent float64 references, written with math on Python floats.
REFERENCES = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / math.hypot(1.0, b),
    "min": min,
    "max": max,
    "sign": _sign_ref,
    "square": lambda a: a * a,
    "abs": abs,
    "tanh": math.tanh,
    "log": _log_ref,
    "sqrt": _sqrt_ref,
}

A, B = sympy.symbols("a b", real=True)


def _grid_args(arity: int) -> list[tuple[float, ...]]:
    """Every point (unary) or every pair of points (binary) of GRID."""
    return list(itertools.product(GRID, repeat=arity))


def _torch_values(name: str, points: list[tuple[float, ...]], dtype=torch.float64) -> torch.Tensor:
    """The primitive's torch function applied to the columns of `points`."""
    cols = [torch.tensor(c, dtype=dtype) for c in zip(*points, strict=True)]
    return P.PRIMITIVES[name].torch_fn(*cols)


def test_table_covers_every_reference_and_arity_lists():
    assert set(P.PRIMITIVES) == set(REFERENCES)
    assert set(P.BINARY) | set(P.UNARY) == set(P.PRIMITIVES)
    assert all(P.arity(n) == 2 for n in P.BINARY) and all(P.arity(n) == 1 for n in P.UNARY)
    assert all(P.arity(t) == 0 for t in P.TERMINALS)
    with pytest.raises(KeyError):
        P.arity("exp")


@pytest.mark.parametrize("name", list(P.PRIMITIVES))
def test_torch_matches_float64_reference(name):
    prim = P.PRIMITIVES[name]
    points = _grid_args(prim.arity)
    got = _torch_values(name, points).numpy()
    want = np.array([REFERENCES[name](*p) for p in points])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["log", "sqrt", "div"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_protected_ops_finite_for_finite_inputs(name, dtype):
    info = torch.finfo(dtype)
    values = [0.0, info.tiny, -info.tiny, 1e-30, -1.0, 1e30, -1e30, info.max, -info.max]
    points = list(itertools.product(values, repeat=P.PRIMITIVES[name].arity))
    cols = [torch.tensor(c, dtype=dtype, requires_grad=True) for c in zip(*points, strict=True)]
    out = P.PRIMITIVES[name].torch_fn(*cols)
    assert torch.isfinite(out).all(), name
    out.sum().backward()
    for col in cols:
        assert torch.isfinite(col.grad).all(), f"{name} gradient"


def test_div_accurate_when_b_squared_overflows():
    # 1e25 / sqrt(1 + 1e40): b*b overflows float32, the quotient (1e5) does not.
    a = torch.tensor([1e25], dtype=torch.float32)
    b = torch.tensor([1e20], dtype=torch.float32)
    torch.testing.assert_close(P.protected_div_torch(a, b), torch.tensor([1e5]), rtol=1e-5, atol=0)
    big = torch.tensor([1e300], dtype=torch.float64)
    torch.testing.assert_close(P.protected_div_torch(big, big), torch.tensor([1.0], dtype=torch.float64))


def test_protected_log_and_sqrt_clamp_at_eps():
    x = torch.tensor([0.0, 1e-9, -1e-9, -4.0], dtype=torch.float64)
    assert P.protected_log_torch(x).tolist()[:3] == [math.log(P.PROTECT_EPS)] * 3
    assert P.protected_sqrt_torch(x).tolist() == pytest.approx([math.sqrt(P.PROTECT_EPS)] * 3 + [2.0])


def _sympy_value(expr: sympy.Expr, point: tuple[float, ...]) -> float:
    """Numeric value of a SymPy expression in (a, b) at `point`."""
    subs = dict(zip((A, B), (sympy.Float(v, 30) for v in point), strict=False))
    return float(expr.xreplace(subs).evalf(30))


@pytest.mark.parametrize("name", list(P.PRIMITIVES))
def test_sympy_form_matches_torch(name):
    prim = P.PRIMITIVES[name]
    expr = prim.sympy_fn(*(A, B)[: prim.arity])
    points = _grid_args(prim.arity)
    if prim.arity == 2:
        points = points[::3]  # every third pair keeps the edges and the test fast
    got = _torch_values(name, points).numpy()
    want = np.array([_sympy_value(expr, p) for p in points])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", list(P.PRIMITIVES))
def test_latex_template_embeds_children(name):
    prim = P.PRIMITIVES[name]
    children = ["y", "f(x)"][: prim.arity]
    latex = prim.latex(*children)
    assert isinstance(latex, str) and latex.strip()
    for child in children:
        assert child in latex


def test_terminal_latex_and_symbols():
    assert set(P.TERMINAL_LATEX) == set(P.TERMINALS)
    assert P.SYMBOL_Y.is_real and P.SYMBOL_F.is_real
    assert P.CONSTANTS == {"1": 1.0, "-1": -1.0}
