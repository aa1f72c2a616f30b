"""Interval bounds of SymPy expressions (search_engine.expr.intervals): exact on small cases, and every
value an expression takes lies in its bounds."""

from __future__ import annotations

import math

import pytest
import sympy
from hypothesis import given

from search_engine.expr import intervals as I
from search_engine.expr import primitives as P
from search_engine.expr.intervals import OPEN_UNIT, REAL, Interval, bounds
from search_engine.expr.symbolic import SYMBOL_SOFTMAX, SYMBOL_Y, simplified_form
from tests.search_engine.expr.test_fuzz_expressions import trees
from tests.search_engine.fuzzing import fuzz

F = SYMBOL_SOFTMAX
UNIT_F = ((F, OPEN_UNIT),)


def test_arithmetic_keeps_track_of_which_ends_are_attained():
    assert I.mul(OPEN_UNIT, Interval(-1.0, 1.0)) == Interval(-1.0, 1.0, False, False)
    assert I.mul(Interval(0.0, 1.0), Interval(1.0, 2.0, False, True)) == Interval(0.0, 2.0)  # 0 * x is 0
    assert I.add(OPEN_UNIT, I.point(-1.0)) == Interval(-1.0, 0.0, False, False)
    assert I.absolute(Interval(-2.0, 1.0, True, False)) == Interval(0.0, 2.0)
    assert I.sign(OPEN_UNIT) == I.point(1.0) and I.sign(Interval(0.0, 1.0)) == Interval(0.0, 1.0)
    assert I.reciprocal(OPEN_UNIT) == Interval(1.0, math.inf, False, False)
    assert I.reciprocal(Interval(-1.0, 1.0)) == REAL
    assert I.lattice([OPEN_UNIT, I.point(1.0)], largest=True) == I.point(1.0)


@pytest.mark.parametrize(("expr", "expected"), [
    (F**2, Interval(0.0, 1.0, False, False)),
    ((F - 1) ** 2, Interval(0.0, 1.0, False, False)),
    (F - 1, Interval(-1.0, 0.0, False, False)),
    (sympy.sign(F - 1, evaluate=False), I.point(-1.0)),
    (sympy.log(sympy.Max(F, sympy.Float(P.PROTECT_EPS), evaluate=False)), Interval(math.log(P.PROTECT_EPS), 0.0, True, False)),
    (sympy.sqrt(F), Interval(0.0, 1.0, False, False)),
    (1 / sympy.sqrt(1 + F**2), Interval(1 / math.sqrt(2), 1.0, False, False)),
    (sympy.tanh(-F), Interval(math.tanh(-1.0), 0.0, False, False)),
    (sympy.Symbol("z"), REAL),
])
def test_bounds_of_expressions_in_f(expr, expected):
    got = bounds(expr, UNIT_F)
    assert (got.lo_closed, got.hi_closed) == (expected.lo_closed, expected.hi_closed)
    assert got.lo == pytest.approx(expected.lo) and got.hi == pytest.approx(expected.hi)


def test_an_interval_must_be_one():
    with pytest.raises(ValueError, match="not an interval"):
        Interval(1.0, 0.0)


def _inside(value: float, iv: Interval) -> bool:
    tol = 1e-9 * max(1.0, abs(value))  # the bounds are computed in floats
    return iv.lo - tol <= value <= iv.hi + tol


@fuzz(80)
@given(trees(max_leaves=12))
def test_every_value_of_a_classification_form_lies_within_its_bounds(tree):
    """The printed classification form is over y in [0, 1] and f in (0, 1): its values stay in its bounds."""
    form = simplified_form(tree, "classification")
    ranges = ((SYMBOL_Y, Interval(0.0, 1.0)), *UNIT_F)
    enclosure = bounds(form, ranges)
    for y in (0.0, 0.4, 1.0):
        for f in (1e-9, 0.2, 0.999):
            value = complex(form.subs({SYMBOL_Y: y, F: f}).evalf())
            if abs(value.imag) < 1e-12 and math.isfinite(value.real):
                assert _inside(value.real, enclosure), (form, y, f, value, enclosure)
