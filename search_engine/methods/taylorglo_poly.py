"""TaylorGLO's loss: a third-order Taylor polynomial in (y, f), written as an lfl weighted expression.

Gonzalez & Miikkulainen (GECCO 2021) expand an unknown loss L(y, f) to third order around a
centre (c_y, c_f) learned with the coefficients (in the paper's notation x is the label, our y,
and y the scaled prediction, our f). Every term of the full expansion that does not contain f -
the constant, (y - c_y), (y - c_y)^2 and (y - c_y)^3 - is dropped: its gradient with respect to
the prediction is zero, so it cannot change training. The six terms left, with the Taylor
factors 1/2 and 1/6 kept as the paper writes them, are (u = f - c_f, v = y - c_y)

    L(y, f) = t2 u + 1/2 t3 u^2 + 1/6 t4 u^3 + t5 v u + 1/2 t6 v u^2 + 1/2 t7 v^2 u

with the parameter vector theta = (c_y, c_f, t2, t3, t4, t5, t6, t7), 8 numbers, in the paper's
order (theta0 the label's centre, theta1 the prediction's). As for every lfl expression loss,
f is softmax(logits) and y the one-hot target for classification (the raw output and target
for regression); the values are summed over classes and averaged over the batch
(`expr.losses`). The paper's sign convention does not matter: CMA-ES searches both signs of
every coefficient from a symmetric start. (The EvoMAL paper's reference runner has the same eight
parameters but swaps prediction and target in its code, so three of its terms depend on the target
only and cannot train anything; lfl follows the paper's terms.)

The polynomial is one fixed `Node` tree (constants 1 only) whose edge weights carry theta:
f - c_f is sub(f, 1) with weight c_f on the edge into the 1, each term's coefficient (with its
Taylor factor) is the weight on the edge into that term, every other weight is 1. So a fitted
polynomial is an ordinary weighted learned loss: exports, loss shape, meta-test and the
leaderboard take it as they take EvoMAL's. Its events and hall of fame carry `polynomial_latex`,
the formula as the paper writes it (the weighted tree's own LaTeX, which the LaTeX export also
writes, spells out all 42 edge weights).
"""

from __future__ import annotations

from collections.abc import Sequence

from search_engine.export.latex import latex_number
from search_engine.expr.tree import Node, to_prefix

#: theta's entries, in the paper's order.
PARAMETER_NAMES: tuple[str, ...] = ("c_y", "c_f", "t2", "t3", "t4", "t5", "t6", "t7")
N_PARAMETERS = len(PARAMETER_NAMES)

# A subtree and the weights of its own edges (prefix order, its root's incoming edge excluded).
_Weighted = tuple[Node, tuple[float, ...]]


def _node(op: str, *children: tuple[_Weighted, float]) -> _Weighted:
    """`op` over (subtree, weight of the edge into it) pairs: weights in `Node.walk()` order."""
    weights: list[float] = []
    for (_, inner), edge in children:
        weights += [edge, *inner]  # the child's root comes right after its parent, then its subtree
    return Node(op, tuple(child for (child, _), _ in children)), tuple(weights)


def _leaf(name: str) -> _Weighted:
    return Node(name), ()


def _shifted(variable: str, centre: float) -> _Weighted:
    """variable - centre, as sub(variable, 1) with the centre on the constant's edge."""
    return _node("sub", (_leaf(variable), 1.0), (_leaf("1"), centre))


def _product(a: _Weighted, b: _Weighted) -> _Weighted:
    return _node("mul", (a, 1.0), (b, 1.0))


def _square(a: _Weighted) -> _Weighted:
    return _node("square", (a, 1.0))


def _terms(c_y: float, c_f: float) -> list[_Weighted]:
    """The six monomials u, u^2, u^3, v u, v u^2, v^2 u (u = f - c_f, v = y - c_y), unscaled."""
    def u() -> _Weighted:
        return _shifted("f", c_f)

    def v() -> _Weighted:
        return _shifted("y", c_y)

    return [u(), _square(u()), _product(_square(u()), u()),
            _product(v(), u()), _product(v(), _square(u())), _product(_square(v()), u())]


def coefficients(params: Sequence[float]) -> tuple[float, ...]:
    """The six terms' factors in the polynomial: t2, t3/2, t4/6, t5, t6/2, t7/2 (Taylor's 1/k!)."""
    t2, t3, t4, t5, t6, t7 = (float(p) for p in params[2:])
    return (t2, t3 / 2, t4 / 6, t5, t6 / 2, t7 / 2)


def _check(params: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(p) for p in params)
    if len(values) != N_PARAMETERS:
        raise ValueError(f"TaylorGLO has {N_PARAMETERS} parameters ({', '.join(PARAMETER_NAMES)}), got {len(values)}")
    return values


def polynomial_tree(params: Sequence[float]) -> tuple[Node, tuple[float, ...]]:
    """(tree, edge weights) of the polynomial with parameters theta; the tree never changes.

    The sum is add(add(add(T1, T2), add(T3, T4)), add(T5, T6)): its own edges weigh 1 and the
    edge into term k carries its coefficient.
    """
    c_y, c_f, *_ = theta = _check(params)
    t1, t2, t3, t4, t5, t6 = (
        (term, k) for term, k in zip(_terms(c_y, c_f), coefficients(theta), strict=True))
    left = _node("add", (_node("add", t1, t2), 1.0), (_node("add", t3, t4), 1.0))
    return _node("add", (left, 1.0), (_node("add", t5, t6), 1.0))


#: The prefix string of the (fixed) polynomial tree.
POLYNOMIAL_EXPRESSION = to_prefix(polynomial_tree((0.0,) * N_PARAMETERS)[0])


def candidate_key(params: Sequence[float]) -> str:
    """A hall-of-fame key, distinct per parameter vector: "taylorglo(" + theta to 12 digits + ")"."""
    return "taylorglo(" + ", ".join(f"{p:.12g}" for p in _check(params)) + ")"


def polynomial_latex(params: Sequence[float], digits: int = 4) -> str:
    """The polynomial as the paper writes it, its numbers rounded to `digits` significant digits."""
    c_y, c_f, *_ = theta = _check(params)

    def shifted(symbol: str, centre: float) -> str:
        sign = "-" if centre >= 0 else "+"
        return rf"\left({symbol} {sign} {latex_number(abs(centre), digits)}\right)"

    u, v = shifted("f(x)", c_f), shifted("y", c_y)
    monomials = (u, f"{u}^{{2}}", f"{u}^{{3}}", rf"{v} \cdot {u}", rf"{v} \cdot {u}^{{2}}", rf"{v}^{{2}} \cdot {u}")
    return " + ".join(rf"{latex_number(k, digits)} \cdot {m}" for k, m in zip(coefficients(theta), monomials))

