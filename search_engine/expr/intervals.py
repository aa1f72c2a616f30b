"""Cheap interval bounds of a SymPy expression, for the task-aware canonical forms.

`bounds(expr, ranges)` encloses every value `expr` takes when each symbol stays in its interval
(a softmax output f in (0, 1), say). Endpoints carry whether they are attained, so that
sign(f) = 1 can be decided for f in (0, 1) while sign(f) stays open for f in [0, 1).

The enclosure is conservative: an operation it does not know gives the whole real line, which
only ever means "cannot decide". It never calls SymPy's assumption system, whose queries are what
makes SymPy's own Abs, sign and Max slow on deep trees.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import sympy

INF = math.inf


@dataclass(frozen=True)
class Interval:
    """The reals between lo and hi; an endpoint belongs to it when its `*_closed` flag is set.

    Infinite endpoints are never closed.
    """

    lo: float
    hi: float
    lo_closed: bool = True
    hi_closed: bool = True

    def __post_init__(self) -> None:
        if math.isnan(self.lo) or math.isnan(self.hi) or self.lo > self.hi:
            raise ValueError(f"not an interval: lo={self.lo!r}, hi={self.hi!r}")

    @property
    def is_positive(self) -> bool:
        return self.lo > 0 or (self.lo == 0 and not self.lo_closed)

    @property
    def is_negative(self) -> bool:
        return self.hi < 0 or (self.hi == 0 and not self.hi_closed)

    @property
    def is_nonnegative(self) -> bool:
        return self.lo >= 0

    @property
    def is_nonpositive(self) -> bool:
        return self.hi <= 0

    @property
    def is_zero(self) -> bool:
        return self.lo == 0 and self.hi == 0

    def contains_zero(self) -> bool:
        return (self.lo < 0 or (self.lo == 0 and self.lo_closed)) and (self.hi > 0 or (self.hi == 0 and self.hi_closed))


REAL = Interval(-INF, INF, False, False)
#: Where a softmax output lies: strictly between 0 and 1.
OPEN_UNIT = Interval(0.0, 1.0, False, False)

#: (symbol, interval) pairs: the ranges `bounds` assumes (hashable, so results can be memoised).
Ranges = tuple[tuple[sympy.Symbol, Interval], ...]


def point(value: float) -> Interval:
    """The single number `value`."""
    return Interval(value, value) if math.isfinite(value) else REAL


def _span(ends: list[tuple[float, bool]]) -> Interval:
    """The smallest interval holding the values `ends` (value, whether it is attained)."""
    lo = min(v for v, _ in ends)
    hi = max(v for v, _ in ends)
    lo_closed = any(c for v, c in ends if v == lo)
    hi_closed = any(c for v, c in ends if v == hi)
    return Interval(lo, hi, lo_closed and math.isfinite(lo), hi_closed and math.isfinite(hi))


def add(a: Interval, b: Interval) -> Interval:
    """{x + z : x in a, z in b}."""
    lo, hi = a.lo + b.lo, a.hi + b.hi
    if math.isnan(lo) or math.isnan(hi):
        return REAL
    return Interval(lo, hi, a.lo_closed and b.lo_closed and math.isfinite(lo),
                    a.hi_closed and b.hi_closed and math.isfinite(hi))


def _times(x: float, z: float) -> float:
    # 0 times an unbounded end: the products near that corner approach 0 from one side.
    return 0.0 if x == 0 or z == 0 else x * z


def mul(a: Interval, b: Interval) -> Interval:
    """{x * z : x in a, z in b}: a bilinear map takes its extremes at the corners."""
    corners = [(_times(x, z), xc and zc) for x, xc in ((a.lo, a.lo_closed), (a.hi, a.hi_closed))
               for z, zc in ((b.lo, b.lo_closed), (b.hi, b.hi_closed))]
    if a.contains_zero() or b.contains_zero():  # 0 times anything is attained, whatever the corners
        corners.append((0.0, True))
    return _span(corners)


def negate(a: Interval) -> Interval:
    return Interval(-a.hi, -a.lo, a.hi_closed, a.lo_closed)


def _monotone(a: Interval, fn) -> Interval:
    """The image of `a` under a continuous monotone `fn` (increasing or decreasing; fn of an
    infinite end is its limit): the images of the ends, each attained when its end is."""
    return _span([(fn(a.lo), a.lo_closed), (fn(a.hi), a.hi_closed)])


def absolute(a: Interval) -> Interval:
    """{|x| : x in a}."""
    if a.is_nonnegative:
        return a
    if a.is_nonpositive:
        return negate(a)
    far, far_closed = max((-a.lo, a.lo_closed), (a.hi, a.hi_closed))
    return Interval(0.0, far, True, far_closed and math.isfinite(far))


def sign(a: Interval) -> Interval:
    """{sign(x) : x in a}."""
    if a.is_positive:
        return point(1.0)
    if a.is_negative:
        return point(-1.0)
    if a.is_zero:
        return point(0.0)
    return Interval(0.0 if a.is_nonnegative else -1.0, 0.0 if a.is_nonpositive else 1.0)


def _power(x: float, e: float) -> float:
    try:
        return float(x**e)
    except OverflowError:
        return INF if x > 0 or float(e) % 2 == 0 else -INF
    except ZeroDivisionError:  # 0 ** negative: the limit from above
        return INF


def power(a: Interval, exponent: sympy.Expr) -> Interval:
    """{x ** exponent : x in a} for a numeric exponent; the real line when that is not known."""
    if not exponent.is_number or not exponent.is_real:
        return REAL
    e = float(exponent)
    if exponent.is_Integer and e > 0:
        return _integer_power(a, int(e))
    if exponent.is_Integer and e < 0:
        return reciprocal(_integer_power(a, int(-e)))
    if not a.is_nonnegative:  # a fractional power is real only for x >= 0
        return REAL
    return _monotone(a, lambda x: _power(x, e))


def _integer_power(a: Interval, n: int) -> Interval:
    """{x ** n : x in a} for an integer n >= 1."""
    ends = [(_power(a.lo, n), a.lo_closed), (_power(a.hi, n), a.hi_closed)]
    if n % 2 == 0 and a.contains_zero():  # an even power dips to 0 between the ends
        ends.append((0.0, True))
    return _span(ends)


def reciprocal(a: Interval) -> Interval:
    """{1 / x : x in a}; the real line when a may hold 0."""
    if not (a.is_positive or a.is_negative):
        return REAL
    towards_zero = INF if a.is_positive else -INF  # 1/x as x approaches the open end at 0
    return _monotone(a, lambda x: towards_zero if x == 0 else 1.0 / x)


def _log(x: float) -> float:
    return -INF if x == 0 else math.log(x)


def lattice(parts: list[Interval], largest: bool) -> Interval:
    """{max(x_1, x_2, ...)} (or min when not `largest`) over x_i in parts[i]."""
    pick = max if largest else min
    lo, hi = pick(p.lo for p in parts), pick(p.hi for p in parts)
    return Interval(lo, hi, any(p.lo_closed for p in parts if p.lo == lo),
                    any(p.hi_closed for p in parts if p.hi == hi))


def _numeric(expr: sympy.Expr) -> Interval:
    try:
        return point(float(expr.evalf()))
    except (TypeError, ValueError):  # complex or undefined: nothing to say
        return REAL


def _of(expr: sympy.Expr, ranges: Ranges) -> Interval:
    """One level of the enclosure; the arguments' enclosures come from `bounds` (memoised)."""
    if expr.is_number:
        return _numeric(expr)
    if expr.is_Symbol:
        return dict(ranges).get(expr, REAL)
    parts = [bounds(a, ranges) for a in expr.args]
    if expr.is_Add:
        return functools.reduce(add, parts)
    if expr.is_Mul:
        return functools.reduce(mul, parts)
    if expr.is_Pow:
        return power(parts[0], expr.exp)
    if isinstance(expr, sympy.Abs):
        return absolute(parts[0])
    if isinstance(expr, sympy.sign):
        return sign(parts[0])
    if isinstance(expr, sympy.tanh):
        return _monotone(parts[0], math.tanh)
    if isinstance(expr, sympy.log):
        return _monotone(parts[0], _log) if parts[0].is_nonnegative else REAL
    if isinstance(expr, (sympy.Max, sympy.Min)):
        return lattice(parts, largest=isinstance(expr, sympy.Max))
    return REAL


@functools.lru_cache(maxsize=8192)
def bounds(expr: sympy.Expr, ranges: Ranges = ()) -> Interval:
    """An interval holding every value of `expr` while each symbol of `ranges` stays in its interval
    (other symbols: any real). Conservative: the real line when it cannot tell."""
    try:
        return _of(expr, ranges)
    except (ArithmeticError, ValueError):  # an endpoint computation went out of range
        return REAL
