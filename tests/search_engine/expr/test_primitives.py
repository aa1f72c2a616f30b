"""The primitive table: torch, SymPy and LaTeX meanings of every operation agree."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch

from search_engine.expr import primitives as P
from search_engine.expr.symbolic import SYMBOL_F, SYMBOL_Y

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
ROOT = Path(__file__).resolve().parents[3]


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
    torch.testing.assert_close(P.PRIMITIVES["div"].torch_fn(a, b), torch.tensor([1e5]), rtol=1e-5, atol=0)
    big = torch.tensor([1e300], dtype=torch.float64)
    torch.testing.assert_close(P.PRIMITIVES["div"].torch_fn(big, big), torch.tensor([1.0], dtype=torch.float64))


def test_protected_log_and_sqrt_clamp_at_eps():
    x = torch.tensor([0.0, 1e-9, -1e-9, -4.0], dtype=torch.float64)
    assert P.PRIMITIVES["log"].torch_fn(x).tolist()[:3] == [math.log(P.PROTECT_EPS)] * 3
    assert P.PRIMITIVES["sqrt"].torch_fn(x).tolist() == pytest.approx([math.sqrt(P.PROTECT_EPS)] * 3 + [2.0])


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
    assert SYMBOL_Y.is_real and SYMBOL_F.is_real
    assert P.CONSTANTS == {"1": 1.0, "-1": -1.0}


#: The torch calls each operation was first written with, by hand: a row's function, compiled from its
#: text, must give the very same bits (the search's histories and every stored fitness depend on them).
DIRECT_TORCH = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul,
    "div": lambda a, b: a / torch.hypot(torch.ones_like(b), b),
    "min": torch.minimum, "max": torch.maximum, "sign": torch.sign, "square": torch.square, "abs": torch.abs,
    "tanh": torch.tanh,
    "log": lambda a: torch.log(torch.clamp(torch.abs(a), min=1e-7)),
    "sqrt": lambda a: torch.sqrt(torch.clamp(torch.abs(a), min=1e-7)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(P.PRIMITIVES))
def test_a_rows_function_is_its_torch_text_bit_for_bit(name, dtype):
    assert set(DIRECT_TORCH) == set(P.PRIMITIVES)
    values = [*GRID, math.inf, -math.inf, math.nan, 3e38, -3e38]
    points = list(itertools.product(values, repeat=P.PRIMITIVES[name].arity))
    cols = [torch.tensor(c, dtype=dtype) for c in zip(*points, strict=True)]
    got, want = P.PRIMITIVES[name].torch_fn(*cols), DIRECT_TORCH[name](*cols)
    assert got.dtype == want.dtype and torch.equal(got.view(-1).nan_to_num(7.0), want.view(-1).nan_to_num(7.0))
    assert torch.equal(got.isnan(), want.isnan())


def test_the_torch_text_names_its_children_and_only_div_is_not_one_call():
    for primitive in P.PRIMITIVES.values():
        text = primitive.torch_source(*("left", "right")[: primitive.arity])
        assert "left" in text and ("right" in text) == (primitive.arity == 2)
        assert primitive.torch_is_call == (primitive.name != "div"), primitive.name
    with pytest.raises(ValueError, match="'add' takes 2 argument"):
        P.PRIMITIVES["add"].torch_source("a")


def test_the_table_trees_and_formulas_load_neither_torch_nor_sympy():
    code = ("import sys; from search_engine.expr import primitives, formula, tree\n"
            "t = tree.parse('add(div(sign(y), log(f)), max(min(sqrt(f), tanh(mul(1, y))), abs(square(f))))')\n"
            "assert t.size() == 17 and formula.to_latex(t) and formula.weighted_latex(t, (1.0,) * 16)\n"
            "print(sorted(m for m in ('torch', 'sympy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
