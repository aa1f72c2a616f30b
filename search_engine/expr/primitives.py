"""The primitive set of the symbolic search: one table, one row per operation.

A row is everything an operation means: its name in prefix strings, its arity, the torch
expression it computes (the search's values and every exported module are that one text), its
SymPy form, its LaTeX and its dual-number derivative rule (`expr.dual`). The protected operations
(division, log, sqrt) are defined here and nowhere else, so the search, the SymPy canonical form
and every exported module agree on what they mean.

Importing this module loads neither torch nor SymPy: names, arities and the text forms are read
by processes that have neither (a web page measuring an expression's size, writing a download).
A row's torch function (`torch_fn`) and SymPy builder (`sympy_fn`) import their library when a
caller first asks for them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from search_engine.expr import dual

#: Smallest magnitude fed to log and sqrt; below it the input is clamped.
PROTECT_EPS = 1e-7
#: PROTECT_EPS as torch source writes it (repr: the exact float).
EPS_TEXT = repr(PROTECT_EPS)


@dataclass(frozen=True)
class Primitive:
    """One operation of the search and everything it means.

    `torch` is a torch expression over the children's names ``{0}`` (and ``{1}``): the exporters
    write it as it is, and `torch_fn` is compiled from it, so the search computes what a
    downloaded module computes. `sympy` takes the sympy module, then the children's forms; `latex`
    the children's LaTeX strings; `derivative` is the dual-number rule (`expr.dual`) that emits
    the value and d/df of the node into a population's generated program.
    """

    name: str
    arity: int
    torch: str
    sympy: Callable[..., Any]
    latex: Callable[..., str]
    derivative: Callable[..., dual.Sym]

    def torch_source(self, *children: str) -> str:
        """The torch expression of this operation applied to the children's source text."""
        if len(children) != self.arity:
            raise ValueError(f"{self.name!r} takes {self.arity} argument(s), got {len(children)}")
        return self.torch.format(*children)

    @property
    def torch_is_call(self) -> bool:
        """Whether the torch text is one call (a factor multiplies it as it is; div's quotient needs brackets)."""
        text = self.torch_source(*("a", "b")[: self.arity])
        head, paren, _ = text.partition("(")
        if not paren or not text.endswith(")") or not head.replace(".", "").replace("_", "").isalnum():
            return False
        depth = 0
        for position, char in enumerate(text[len(head):], start=len(head)):
            depth += (char == "(") - (char == ")")
            if depth == 0:
                return position == len(text) - 1
        return False

    @functools.cached_property
    def torch_fn(self) -> Callable[..., Any]:
        """The operation on tensors: the `torch` text compiled into a function (imports torch)."""
        import torch

        params = ("a", "b")[: self.arity]
        source = f"def {self.name}({', '.join(params)}):\n    return {self.torch_source(*params)}\n"
        namespace: dict[str, Any] = {"torch": torch}
        exec(compile(source, f"<primitive {self.name}>", "exec"), namespace)  # the table's own text
        return namespace[self.name]

    @functools.cached_property
    def sympy_fn(self) -> Callable[..., Any]:
        """The operation on SymPy expressions (imports SymPy)."""
        import sympy

        return functools.partial(self.sympy, sympy)


def _paren(s: str) -> str:
    return rf"\left({s}\right)"


# A LaTeX token: a \left / \right with its delimiter, another command, or one character.
_LATEX_TOKEN = re.compile(r"\\left.|\\right.|\\[A-Za-z]+|.", re.DOTALL)


def _tokens_with_depth(s: str) -> Iterator[tuple[str, int]]:
    r"""Each LaTeX token of s with the bracket depth outside it (\left / \right pairs and braces)."""
    depth = 0
    for token in _LATEX_TOKEN.findall(s):
        closes = token.startswith(r"\right") or token == "}"
        depth -= closes
        yield token, depth
        depth += token.startswith(r"\left") or token == "{"


def _top_level(s: str) -> set[str]:
    """What a LaTeX fragment has outside all brackets and braces: "sum" (+ or -, a leading minus
    included), "product" (a cdot) and "power" (^)."""
    kinds = {"+": "sum", "-": "sum", "^": "power", r"\cdot": "product"}
    return {kinds[t] for t, depth in _tokens_with_depth(s) if depth == 0 and t in kinds}


def latex_factor(s: str) -> str:
    """s as a factor of a product or the right side of a minus: bracketed only if it is a sum
    (or starts with a minus sign)."""
    return _paren(s) if "sum" in _top_level(s) else s


def latex_base(s: str) -> str:
    """s as the base of a power: bracketed unless it is one symbol or number ("y", "f(x)", "1")
    or one |...| group (a fraction, log or root squared is bracketed: log|f|^2 would be ambiguous)."""
    plain = all(c.isalnum() or c in "()." for c in s)
    return s if plain or _one_abs_group(s) else _paren(s)


def _one_abs_group(s: str) -> bool:
    r"""True if s is exactly \left| ... \right| (its first \left closes at its very end)."""
    tokens = list(_tokens_with_depth(s))
    return (len(tokens) >= 2 and tokens[0][0] == r"\left|" and tokens[-1][0] == r"\right|"
            and all(depth > 0 for _, depth in tokens[1:-1]))


def _clamped(sp, a):
    """max(|a|, eps): the argument the protected log and sqrt see."""
    return sp.Max(sp.Abs(a), sp.Float(PROTECT_EPS))


PRIMITIVES: dict[str, Primitive] = {
    p.name: p
    for p in (
        Primitive("add", 2, "torch.add({0}, {1})", lambda sp, a, b: a + b,
                  lambda a, b: f"{a} + {b}", dual.add_rule),
        Primitive("sub", 2, "torch.sub({0}, {1})", lambda sp, a, b: a - b,
                  lambda a, b: f"{a} - {latex_factor(b)}", dual.sub_rule),
        Primitive("mul", 2, "torch.mul({0}, {1})", lambda sp, a, b: a * b,
                  lambda a, b: f"{latex_factor(a)} \\cdot {latex_factor(b)}", dual.mul_rule),
        # Analytic quotient a / sqrt(1 + b^2): smooth, and finite wherever b is finite. hypot(1, b), not
        # sqrt(1 + b*b): b*b overflows for |b| > ~1e19 in float32, turning 1e25 / 1e20 into 0, not 1e5.
        Primitive("div", 2, "{0} / torch.hypot(torch.ones_like({1}), {1})",
                  lambda sp, a, b: a / sp.sqrt(1 + b**2),
                  lambda a, b: rf"\frac{{{a}}}{{\sqrt{{1 + {latex_base(b)}^{{2}}}}}}", dual.div_rule),
        Primitive("min", 2, "torch.minimum({0}, {1})", lambda sp, a, b: sp.Min(a, b),
                  lambda a, b: rf"\min\left({a}, {b}\right)", dual.min_rule),
        Primitive("max", 2, "torch.maximum({0}, {1})", lambda sp, a, b: sp.Max(a, b),
                  lambda a, b: rf"\max\left({a}, {b}\right)", dual.max_rule),
        Primitive("sign", 1, "torch.sign({0})", lambda sp, a: sp.sign(a),
                  lambda a: rf"\operatorname{{sign}}{_paren(a)}", dual.sign_rule),
        Primitive("square", 1, "torch.square({0})", lambda sp, a: a**2,
                  lambda a: f"{latex_base(a)}^{{2}}", dual.square_rule),
        Primitive("abs", 1, "torch.abs({0})", lambda sp, a: sp.Abs(a),
                  lambda a: rf"\left|{a}\right|", dual.abs_rule),
        Primitive("tanh", 1, "torch.tanh({0})", lambda sp, a: sp.tanh(a),
                  lambda a: rf"\tanh{_paren(a)}", dual.tanh_rule),
        # log(max(|x|, eps)) and sqrt(max(|x|, eps)).
        Primitive("log", 1, f"torch.log(torch.clamp(torch.abs({{0}}), min={EPS_TEXT}))",
                  lambda sp, a: sp.log(_clamped(sp, a)), lambda a: rf"\log\left|{a}\right|", dual.log_rule),
        Primitive("sqrt", 1, f"torch.sqrt(torch.clamp(torch.abs({{0}}), min={EPS_TEXT}))",
                  lambda sp, a: sp.sqrt(_clamped(sp, a)), lambda a: rf"\sqrt{{\left|{a}\right|}}", dual.sqrt_rule),
    )
}

#: Terminal names as written in prefix strings: the target, the prediction, and two constants.
TARGET = "y"
PREDICTION = "f"
CONSTANTS: dict[str, float] = {"1": 1.0, "-1": -1.0}
TERMINALS: tuple[str, ...] = (TARGET, PREDICTION, *CONSTANTS)

TERMINAL_LATEX: dict[str, str] = {TARGET: "y", PREDICTION: "f(x)", "1": "1", "-1": "-1"}

BINARY: tuple[str, ...] = tuple(n for n, p in PRIMITIVES.items() if p.arity == 2)
UNARY: tuple[str, ...] = tuple(n for n, p in PRIMITIVES.items() if p.arity == 1)


def arity(name: str) -> int:
    """Arity of an operation or terminal name (0 for terminals)."""
    if name in PRIMITIVES:
        return PRIMITIVES[name].arity
    if name in TERMINALS:
        return 0
    raise KeyError(name)
