"""Symbolic views of a loss expression: SymPy forms, canonical keys, LaTeX.

The canonical key identifies losses that SymPy's cheap canonicalization proves equal, so the
search evaluates each equivalence class once. Kept apart from `expression` (trees, text, JSON,
compilation to torch) to keep each module to one concept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import sympy
from sympy.printing.latex import LatexPrinter

from search_engine.expr import primitives as P
from search_engine.expr.tree import Node

# --------------------------------------------------------------------------------------------
# SymPy: to_sympy / canonical forms
# --------------------------------------------------------------------------------------------

#: Largest number of terms a product or square may expand into; beyond it the node stays factored.
EXPAND_TERM_LIMIT = 64

# Ops whose SymPy form is a polynomial in its children (div: a times an opaque 1/sqrt(1 + b^2)).
_ARITHMETIC = frozenset({"add", "sub", "mul", "div", "square"})
_LATTICE = {"min": sympy.Min, "max": sympy.Max}


def _terminal_sympy(name: str) -> sympy.Expr:
    """y and f as the shared real symbols, 1 and -1 as exact Integers."""
    if name == P.TARGET:
        return P.SYMBOL_Y
    if name == P.PREDICTION:
        return P.SYMBOL_F
    return sympy.Integer(int(P.CONSTANTS[name]))


def _sympy_of(node: Node) -> sympy.Expr:
    """Uncached recursive conversion; SymPy auto-evaluates (orders, folds constants) as it builds."""
    if node.is_terminal:
        return _terminal_sympy(node.op)
    return P.PRIMITIVES[node.op].sympy_fn(*(_sympy_of(c) for c in node.children))


@functools.lru_cache(maxsize=1024)
def to_sympy(node: Node) -> sympy.Expr:
    """The tree as a SymPy expression over `P.SYMBOL_Y` and `P.SYMBOL_F`.

    Built with each primitive's sympy_fn and SymPy's full automatic evaluation: faithful, but it
    can take a second on deep min/max trees, so the search itself uses `canonical_form`.
    """
    return _sympy_of(node)


def _numeric_value(a: sympy.Expr) -> float | None:
    """The value of a constant expression (log(2), tanh(1), ...), or None if it is not one."""
    if not a.is_number:
        return None
    try:
        return float(a.evalf())
    except TypeError:  # not real, so not comparable; leave it in place
        return None


def _light_lattice(cls: type[sympy.Expr], args: list[sympy.Expr]) -> sympy.Expr:
    """Min/Max with only the cheap rewrites: flatten, fold constants, drop duplicates, order.

    SymPy's full evaluation tries to prove which argument dominates by factoring their
    differences, which takes seconds on deep trees; the cheap rewrites cover the common cases.
    """
    flat: list[sympy.Expr] = []
    for a in args:
        flat.extend(a.args if isinstance(a, cls) else (a,))
    values = [_numeric_value(a) for a in flat]
    pairs = list(zip(values, flat, strict=True))
    constants = [(v, sympy.default_sort_key(a), a) for v, a in pairs if v is not None]
    rest = {a for v, a in pairs if v is None}
    if constants:  # keep the one extreme constant, exactly as written (log(2), not 0.693)
        rest.add((max(constants) if cls is sympy.Max else min(constants))[2])
    if len(rest) == 1:
        return rest.pop()
    return cls(*rest, evaluate=False)  # evaluate=False still sorts the arguments canonically


def _light_abs(a: sympy.Expr) -> sympy.Expr:
    """|a| with only structural rewrites (numbers, |-x| = |x|, ||x|| = |x|, |x^(2k)| = x^(2k)).

    SymPy's own Abs runs `signsimp` on its argument, which dominates the cost on deep trees.
    """
    if a.is_number:
        return sympy.Abs(a)  # a constant: SymPy folds it numerically, cheaply
    if a.could_extract_minus_sign():
        a = -a
    if isinstance(a, sympy.Abs) or (a.is_Pow and a.exp.is_even and a.base.is_extended_real):
        return a
    return sympy.Abs(a, evaluate=False)


def _light_sign(a: sympy.Expr) -> sympy.Expr:
    """sign(a) with structural rewrites only; SymPy's own sign queries (slow) sign assumptions."""
    if a.is_number:
        return sympy.sign(a)  # a constant: SymPy decides it numerically, cheaply
    if isinstance(a, sympy.sign):
        return a
    if a.could_extract_minus_sign():
        return -_light_sign(-a)
    coeff, rest = a.as_coeff_Mul()
    if coeff != 1:
        return sympy.sign(coeff) * _light_sign(rest)
    return sympy.sign(a, evaluate=False)


def _light_protected(outer: Callable[[sympy.Expr], sympy.Expr], a: sympy.Expr) -> sympy.Expr:
    """outer(max(|a|, eps)) as in the primitive table's log and sqrt, built with the light rewrites."""
    return outer(_light_lattice(sympy.Max, [_light_abs(a), sympy.Float(P.PROTECT_EPS)]))


def _expansion_is_small(op: str, kids: list[sympy.Expr]) -> bool:
    """Whether distributing `op` over its children's sums stays within EXPAND_TERM_LIMIT terms."""
    counts = [len(sympy.Add.make_args(k)) for k in kids]
    if op == "mul":
        return counts[0] * counts[1] <= EXPAND_TERM_LIMIT
    if op == "square":
        return counts[0] * (counts[0] + 1) // 2 <= EXPAND_TERM_LIMIT
    return True  # add, sub and div are linear in their (first) argument


def _canonical_of(node: Node) -> sympy.Expr:
    """Bottom-up canonical form: children first, then this node, expanded one level only.

    Because the children are already canonical, a shallow expansion here yields an expanded
    polynomial skeleton (functions and 1/sqrt(...) treated as atoms) without ever rebuilding,
    and so re-evaluating, the subtrees below.
    """
    if node.is_terminal:
        return _terminal_sympy(node.op)
    kids = [_canonical_of(c) for c in node.children]
    # Ops whose SymPy evaluation is costly are built with cheap equivalents of their sympy_fn.
    if node.op in _LATTICE:
        return _light_lattice(_LATTICE[node.op], kids)
    if node.op == "abs":
        return _light_abs(kids[0])
    if node.op == "sign":
        return _light_sign(kids[0])
    if node.op in ("log", "sqrt"):
        return _light_protected(sympy.log if node.op == "log" else sympy.sqrt, kids[0])
    expr = P.PRIMITIVES[node.op].sympy_fn(*kids)
    if node.op in _ARITHMETIC and _expansion_is_small(node.op, kids):
        expr = sympy.expand(
            expr, deep=False, mul=True, multinomial=True, power_exp=False, power_base=False, log=False
        )
    return expr


@functools.lru_cache(maxsize=4096)
def canonical_form(node: Node) -> sympy.Expr:
    """A SymPy form in which trees SymPy can cheaply tell equal coincide (never calls `simplify`).

    Built bottom-up with SymPy's automatic evaluation, products and squares of sums expanded
    (up to EXPAND_TERM_LIMIT terms), and min/max normalized cheaply (see `_light_lattice`).
    """
    return _canonical_of(node)


@functools.lru_cache(maxsize=4096)
def canonical_key(node: Node) -> str:
    """A string equal for trees that SymPy's canonicalization identifies, e.g. add(y,f) and add(f,y)."""
    return sympy.srepr(canonical_form(node))


def depends_on_prediction(node: Node) -> bool:
    """Whether the canonical form still mentions f(x) (so sub(f, f) does not)."""
    return P.SYMBOL_F in canonical_form(node).free_symbols


# --------------------------------------------------------------------------------------------
# LaTeX
# --------------------------------------------------------------------------------------------


def to_latex(node: Node) -> str:
    """LaTeX that mirrors the tree, from the primitive table's templates."""
    if node.is_terminal:
        return P.TERMINAL_LATEX[node.op]
    return P.PRIMITIVES[node.op].latex(*(to_latex(c) for c in node.children))


class _LossLatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer, writing the protection constant as epsilon instead of 1.0e-7."""

    def _print_Float(self, expr: sympy.Float) -> str:
        if expr == sympy.Float(P.PROTECT_EPS):
            return r"\epsilon"
        return super()._print_Float(expr)


def to_simplified_latex(node: Node) -> str:
    """LaTeX of the canonical SymPy form, with the prediction written f(x) as in `to_latex`."""
    # A printer rather than xreplace: rebuilding the expression would re-run SymPy's slow evaluation.
    printer = _LossLatexPrinter({"symbol_names": {P.SYMBOL_F: P.TERMINAL_LATEX[P.PREDICTION]}})
    return printer.doprint(canonical_form(node))
