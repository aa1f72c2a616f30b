"""Symbolic views of a loss expression: SymPy forms, canonical keys, simplified LaTeX and text.

The canonical key identifies losses that SymPy's cheap canonicalization proves equal, so the
search evaluates each equivalence class once. Kept apart from `tree` (trees, text, JSON) and
`formula` (a tree written as LaTeX), which need no SymPy.

The forms know the task. With no task kind (or "regression") y and f are any reals. For
"classification" y is one entry of a one-hot target and f one entry of a softmax output, so a
loss is the pair of functions of f it becomes at y = 1 and at y = 0, each built with f in (0, 1):
y**n, |y|, sign(y) and max(y, 0) are all y, y*(1 - y) is 0, |f| is f and sign(f) is 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from search_engine import catalog
from search_engine.expr import primitives as P
from search_engine.expr.intervals import OPEN_UNIT, Interval, Ranges, bounds
from search_engine.expr.tree import Node

# --------------------------------------------------------------------------------------------
# SymPy: to_sympy / canonical forms
# --------------------------------------------------------------------------------------------

#: Largest number of terms a product or square may expand into; beyond it the node stays factored.
EXPAND_TERM_LIMIT = 64

# Ops whose SymPy form is a polynomial in its children (div: a times an opaque 1/sqrt(1 + b^2)).
_ARITHMETIC = frozenset({"add", "sub", "mul", "div", "square"})
_LATTICE = {"min": sympy.Min, "max": sympy.Max}


#: SymPy symbols for the two variable terminals (real-valued, so |x|^2 simplifies to x^2).
SYMBOL_Y = sympy.Symbol(P.TARGET, real=True)
SYMBOL_F = sympy.Symbol(P.PREDICTION, real=True)
#: A softmax output: the f of a classification task, in (0, 1).
SYMBOL_SOFTMAX = sympy.Symbol("f", positive=True)


@dataclass(frozen=True)
class _Domain:
    """What the terminals stand for while a form is built, and what is known of their values."""

    y: sympy.Expr  # the target: a symbol, or the value of a one-hot entry
    f: sympy.Symbol  # the prediction
    ranges: Ranges | None = None  # intervals of the symbols; None: no reasoning about values


#: No assumption on the task: y and f are any reals (the form that holds for every task).
ANY_REALS = _Domain(SYMBOL_Y, SYMBOL_F)
#: Classification, at the target's class (y = 1) and at every other class (y = 0).
_SOFTMAX_RANGES: Ranges = ((SYMBOL_SOFTMAX, OPEN_UNIT),)
AT_TARGET_CLASS = _Domain(sympy.Integer(1), SYMBOL_SOFTMAX, _SOFTMAX_RANGES)
AT_OTHER_CLASS = _Domain(sympy.Integer(0), SYMBOL_SOFTMAX, _SOFTMAX_RANGES)
#: Classification with y kept as a symbol in [0, 1]: weaker than the two one-hot forms (sign(y) stays),
#: but it keeps the shape of the tree, so it often prints shorter.
_BETWEEN_CLASSES = _Domain(SYMBOL_Y, SYMBOL_SOFTMAX, ((SYMBOL_Y, Interval(0.0, 1.0)), *_SOFTMAX_RANGES))


def _check_kind(kind: str | None) -> None:
    """Reject a task kind other than None, classification or regression."""
    if kind is not None and kind not in catalog.KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected None or one of {', '.join(catalog.KINDS)}")


def _terminal_sympy(name: str, domain: _Domain = ANY_REALS) -> sympy.Expr:
    """y and f as the domain's target and prediction, 1 and -1 as exact Integers."""
    if name == P.TARGET:
        return domain.y
    if name == P.PREDICTION:
        return domain.f
    return sympy.Integer(int(P.CONSTANTS[name]))


def _sympy_of(node: Node) -> sympy.Expr:
    """Uncached recursive conversion; SymPy auto-evaluates (orders, folds constants) as it builds."""
    if node.is_terminal:
        return _terminal_sympy(node.op)
    return P.PRIMITIVES[node.op].sympy_fn(*(_sympy_of(c) for c in node.children))


@functools.lru_cache(maxsize=1024)
def to_sympy(node: Node) -> sympy.Expr:
    """The tree as a SymPy expression over `SYMBOL_Y` and `SYMBOL_F`.

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


def _light_lattice(cls: type[sympy.Expr], args: list[sympy.Expr], domain: _Domain = ANY_REALS) -> sympy.Expr:
    """Min/Max with only the cheap rewrites: flatten, fold constants, drop duplicates, order, and
    (in a domain with ranges) drop the arguments whose interval shows they never decide it.

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
    if domain.ranges is not None and len(rest) > 1:
        rest = _undominated(cls, rest, domain.ranges)
    if len(rest) == 1:
        return rest.pop()
    return cls(*rest, evaluate=False)  # evaluate=False still sorts the arguments canonically


def _undominated(cls: type[sympy.Expr], args: set[sympy.Expr], ranges: Ranges) -> set[sympy.Expr]:
    """The arguments of a Max (Min) that can decide it: an argument never above (below) what
    another argument is at least (at most) is dropped, e.g. max(f, 1) = 1 and max(f, 0) = f for
    f in (0, 1)."""
    kept = sorted(args, key=sympy.default_sort_key)  # which of two equal constants goes: fixed
    enclosures = {a: bounds(a, ranges) for a in kept}
    if cls is sympy.Max:
        def dominated(a, b):
            return enclosures[a].hi <= enclosures[b].lo
    else:
        def dominated(a, b):
            return enclosures[a].lo >= enclosures[b].hi
    for a in list(kept):
        if any(b is not a and dominated(a, b) for b in kept):
            kept.remove(a)
    return set(kept)


def _light_abs(a: sympy.Expr, domain: _Domain = ANY_REALS) -> sympy.Expr:
    """|a| with only structural rewrites (numbers, |-x| = |x|, ||x|| = |x|, |x^(2k)| = x^(2k)),
    and in a domain with ranges |a| = a or -a when a's interval has one sign.

    SymPy's own Abs runs `signsimp` on its argument, which dominates the cost on deep trees.
    """
    if a.is_number:
        return sympy.Abs(a)  # a constant: SymPy folds it numerically, cheaply
    if domain.ranges is not None:
        enclosure = bounds(a, domain.ranges)
        if enclosure.is_nonnegative:
            return a
        if enclosure.is_nonpositive:
            return -a
    if a.could_extract_minus_sign():
        a = -a
    if isinstance(a, sympy.Abs) or (a.is_Pow and a.exp.is_even and a.base.is_extended_real):
        return a
    return sympy.Abs(a, evaluate=False)


def _light_sign(a: sympy.Expr, domain: _Domain = ANY_REALS) -> sympy.Expr:
    """sign(a) with structural rewrites only (SymPy's own sign queries slow sign assumptions), and
    in a domain with ranges -1, 0 or 1 when a's interval decides it."""
    if a.is_number:
        return sympy.sign(a)  # a constant: SymPy decides it numerically, cheaply
    if isinstance(a, sympy.sign):
        return a
    if domain.ranges is not None:
        enclosure = bounds(a, domain.ranges)
        for decided, value in ((enclosure.is_positive, 1), (enclosure.is_negative, -1), (enclosure.is_zero, 0)):
            if decided:
                return sympy.Integer(value)
    if a.could_extract_minus_sign():
        return -_light_sign(-a, domain)
    coeff, rest = a.as_coeff_Mul()
    if coeff != 1:
        return sympy.sign(coeff) * _light_sign(rest, domain)
    return sympy.sign(a, evaluate=False)


def _light_protected(outer: Callable[[sympy.Expr], sympy.Expr], a: sympy.Expr, domain: _Domain) -> sympy.Expr:
    """outer(max(|a|, eps)) as in the primitive table's log and sqrt, built with the light rewrites."""
    return outer(_light_lattice(sympy.Max, [_light_abs(a, domain), sympy.Float(P.PROTECT_EPS)], domain))


def _expansion_is_small(op: str, kids: list[sympy.Expr]) -> bool:
    """Whether distributing `op` over its children's sums stays within EXPAND_TERM_LIMIT terms."""
    counts = [len(sympy.Add.make_args(k)) for k in kids]
    if op == "mul":
        return counts[0] * counts[1] <= EXPAND_TERM_LIMIT
    if op == "square":
        return counts[0] * (counts[0] + 1) // 2 <= EXPAND_TERM_LIMIT
    return True  # add, sub and div are linear in their (first) argument


def _canonical_of(node: Node, domain: _Domain = ANY_REALS) -> sympy.Expr:
    """Bottom-up canonical form in `domain`: children first, then this node, expanded one level only.

    Because the children are already canonical, a shallow expansion here yields an expanded
    polynomial skeleton (functions and 1/sqrt(...) treated as atoms) without ever rebuilding,
    and so re-evaluating, the subtrees below.
    """
    if node.is_terminal:
        return _terminal_sympy(node.op, domain)
    kids = [_canonical_of(c, domain) for c in node.children]
    # Ops whose SymPy evaluation is costly are built with cheap equivalents of their sympy_fn.
    if node.op in _LATTICE:
        return _light_lattice(_LATTICE[node.op], kids, domain)
    if node.op == "abs":
        return _light_abs(kids[0], domain)
    if node.op == "sign":
        return _light_sign(kids[0], domain)
    if node.op in ("log", "sqrt"):
        return _light_protected(sympy.log if node.op == "log" else sympy.sqrt, kids[0], domain)
    expr = P.PRIMITIVES[node.op].sympy_fn(*kids)
    if node.op in _ARITHMETIC and _expansion_is_small(node.op, kids):
        expr = sympy.expand(
            expr, deep=False, mul=True, multinomial=True, power_exp=False, power_base=False, log=False
        )
    return expr


@functools.lru_cache(maxsize=4096)
def _form_in(node: Node, domain: _Domain) -> sympy.Expr:
    return _canonical_of(node, domain)


def one_hot_forms(node: Node) -> tuple[sympy.Expr, sympy.Expr]:
    """The classification loss as two functions of a softmax output f in (0, 1): its value at the
    target's class (y = 1) and at every other class (y = 0). Two trees are the same loss for
    classification exactly when both functions are (the key compares these canonical forms)."""
    return _form_in(node, AT_TARGET_CLASS), _form_in(node, AT_OTHER_CLASS)


def _one_hot_expression(node: Node) -> sympy.Expr:
    """One SymPy expression of the classification loss over y and f: at_target*y + at_other*(1 - y),
    written y*(at_target - at_other) + at_other (y = 1 or 0 picks the value back)."""
    at_target, at_other = one_hot_forms(node)
    return SYMBOL_Y * (at_target - at_other) + at_other


@functools.lru_cache(maxsize=4096)
def canonical_form(node: Node, kind: str | None = None) -> sympy.Expr:
    """A SymPy form in which trees SymPy can cheaply tell equal for the task coincide (never calls
    `simplify`).

    Built bottom-up with SymPy's automatic evaluation, products and squares of sums expanded
    (up to EXPAND_TERM_LIMIT terms), and min/max normalized cheaply (see `_light_lattice`).
    kind None or "regression": over any reals y and f. "classification": over a one-hot y and a
    softmax f (see `one_hot_forms`), where f is the positive symbol SYMBOL_SOFTMAX.
    """
    _check_kind(kind)
    if kind == "classification":
        return _one_hot_expression(node)
    return _form_in(node, ANY_REALS)


@functools.lru_cache(maxsize=4096)
def canonical_key(node: Node, kind: str | None = None) -> str:
    """A string equal for trees that the canonicalization identifies for the task `kind`.

    kind None (the default) or "regression": y and f are any reals, so add(y, f) and add(f, y)
    share a key but abs(y) and y do not. "classification": y is one-hot and f a softmax output,
    so abs(y), sign(y), square(y) and y share a key, as do abs(f) and f. A key of one kind is
    never compared with a key of another.
    """
    _check_kind(kind)
    if kind == "classification":
        return sympy.srepr(sympy.Tuple(*one_hot_forms(node)))
    return sympy.srepr(_form_in(node, ANY_REALS))


def depends_on_prediction(node: Node, kind: str | None = None) -> bool:
    """Whether the canonical form for the task still mentions f(x) (so sub(f, f) does not, nor,
    for classification, max(f, 1))."""
    _check_kind(kind)
    if kind == "classification":
        return any(SYMBOL_SOFTMAX in form.free_symbols for form in one_hot_forms(node))
    return SYMBOL_F in _form_in(node, ANY_REALS).free_symbols


# --------------------------------------------------------------------------------------------
# The simplified forms as LaTeX and text (the tree as written: `expr.formula`)
# --------------------------------------------------------------------------------------------


def _is_protection(a: sympy.Expr) -> bool:
    return a == sympy.Float(P.PROTECT_EPS)


def _protected_argument(expr: sympy.Expr) -> sympy.Expr | None:
    """x for max(x, eps), the clamp of the protected log and sqrt; None for anything else."""
    if not isinstance(expr, sympy.Max) or len(expr.args) != 2:
        return None
    rest = [a for a in expr.args if not _is_protection(a)]
    return rest[0] if len(rest) == 1 else None


def _clamps(expr: sympy.Expr) -> frozenset[sympy.Expr]:
    """The clamps max(x, eps) that are the argument of a log or a square root in `expr`: printed as
    x, the way `formula.to_latex` writes log|a| (a clamp elsewhere, e.g. sqrt(a)^2, is printed in full)."""
    found = set()
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.log) or (node.is_Pow and abs(node.exp) == sympy.S.Half):
            inner = node.args[0]
            if _protected_argument(inner) is not None:
                found.add(inner)
    return frozenset(found)


def short_number(value: sympy.Float) -> str:
    """A constant of a printed loss to 4 significant digits ("259.8", "1.5e-05"): printed forms are for
    reading (log(eps)^2 is 259.793007413442...); the expression and its weights keep every digit."""
    return format(float(value), ".4g")


class _LossLatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer for losses: a log's or a root's clamp max(x, eps) is written x,
    any other eps as epsilon instead of 1.0e-7."""

    def __init__(self, clamps: frozenset[sympy.Expr], settings: dict) -> None:
        super().__init__(settings)
        self._hidden = clamps

    def _print_Float(self, expr: sympy.Float) -> str:
        if _is_protection(expr):
            return r"\epsilon"
        mantissa, _, exponent = short_number(expr).partition("e")
        return rf"{mantissa} \cdot 10^{{{int(exponent)}}}" if exponent else mantissa

    def _print_Max(self, expr: sympy.Max, exp: str | None = None) -> str:
        if expr not in self._hidden:
            return super()._print_Max(expr, exp)
        text = self._print(_protected_argument(expr))
        return rf"\left({text}\right)^{{{exp}}}" if exp else text


class _LossStrPrinter(StrPrinter):
    """SymPy's text printer for losses: abs, max and min named as the primitives are, a log's or a
    root's clamp max(x, eps) written x."""

    def __init__(self, clamps: frozenset[sympy.Expr]) -> None:
        super().__init__()
        self._hidden = clamps

    def _print_Float(self, expr: sympy.Float) -> str:
        return "eps" if _is_protection(expr) else short_number(expr)

    def _call(self, name: str, expr: sympy.Expr) -> str:
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    def _print_Max(self, expr: sympy.Max) -> str:
        return self._print(_protected_argument(expr)) if expr in self._hidden else self._call("max", expr)

    def _print_Min(self, expr: sympy.Min) -> str:
        return self._call("min", expr)

    def _print_Abs(self, expr: sympy.Abs) -> str:
        return self._call("abs", expr)


@functools.lru_cache(maxsize=4096)
def simplified_form(node: Node, kind: str | None = None) -> sympy.Expr:
    """The shortest (fewest operations) of the forms that are exact for the task `kind`: the
    canonical form over any reals; for classification the form with y in [0, 1] and f in (0, 1),
    and the one-hot form y*a + b."""
    _check_kind(kind)
    if kind != "classification":
        return _form_in(node, ANY_REALS)
    general = _form_in(node, _BETWEEN_CLASSES)
    one_hot = _one_hot_expression(node)
    expanded = sympy.expand(one_hot, deep=False, mul=True, multinomial=False, power_exp=False,
                            power_base=False, log=False)
    # min keeps the first of equal sizes: the general form, which mirrors the tree most closely.
    return min((general, expanded, one_hot), key=sympy.count_ops)


def to_simplified_latex(node: Node, kind: str | None = None) -> str:
    """LaTeX of `simplified_form` for the task, with the prediction written f(x) as in
    `formula.to_latex`: mul(mul(-1, -1), y) is y; for classification sign(y) is y and abs(f) is f."""
    # A printer rather than xreplace: rebuilding the expression would re-run SymPy's slow evaluation.
    form = simplified_form(node, kind)
    names = {SYMBOL_F: P.TERMINAL_LATEX[P.PREDICTION], SYMBOL_SOFTMAX: P.TERMINAL_LATEX[P.PREDICTION]}
    return _LossLatexPrinter(_clamps(form), {"symbol_names": names}).doprint(form)


def simplified_text(node: Node, kind: str | None = None) -> str:
    """Plain text of `simplified_form` for the task, e.g. "-y*log(f)" for mul(-1, mul(y, log(f)))."""
    form = simplified_form(node, kind)
    return _LossStrPrinter(_clamps(form)).doprint(form)
