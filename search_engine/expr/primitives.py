"""The primitive set of the symbolic search: one table, one row per operation.

Each row knows its arity, how to compute it in torch, how to write it in SymPy
and how to typeset it in LaTeX. The protected operations (division, log, sqrt)
are defined here and nowhere else, so the search, the SymPy canonical form and
every exported module agree on what they mean.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sympy
import torch

#: Smallest magnitude fed to log and sqrt; below it the input is clamped.
PROTECT_EPS = 1e-7


def protected_div_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Analytic quotient a / sqrt(1 + b^2): smooth, and finite wherever b is finite."""
    # hypot(1, b) instead of sqrt(1 + b*b): b*b overflows for |b| > ~1e19 in float32
    # (~1e154 in float64), which would turn e.g. 1e25 / 1e20 into 0 instead of 1e5.
    return a / torch.hypot(torch.ones_like(b), b)


def protected_log_torch(x: torch.Tensor) -> torch.Tensor:
    """log(max(|x|, eps))."""
    return torch.log(torch.clamp(torch.abs(x), min=PROTECT_EPS))


def protected_sqrt_torch(x: torch.Tensor) -> torch.Tensor:
    """sqrt(max(|x|, eps))."""
    return torch.sqrt(torch.clamp(torch.abs(x), min=PROTECT_EPS))


_EPS = sympy.Float(PROTECT_EPS)


@dataclass(frozen=True)
class Primitive:
    """One operation of the search: name as written in prefix strings, and its three meanings."""

    name: str
    arity: int
    torch_fn: Callable[..., torch.Tensor]
    sympy_fn: Callable[..., sympy.Expr]
    latex: Callable[..., str]  # takes the children's LaTeX strings


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


PRIMITIVES: dict[str, Primitive] = {
    p.name: p
    for p in (
        Primitive("add", 2, torch.add, lambda a, b: a + b, lambda a, b: f"{a} + {b}"),
        Primitive("sub", 2, torch.sub, lambda a, b: a - b, lambda a, b: f"{a} - {latex_factor(b)}"),
        Primitive("mul", 2, torch.mul, lambda a, b: a * b, lambda a, b: f"{latex_factor(a)} \\cdot {latex_factor(b)}"),
        Primitive(
            "div", 2, protected_div_torch,
            lambda a, b: a / sympy.sqrt(1 + b**2),
            lambda a, b: rf"\frac{{{a}}}{{\sqrt{{1 + {latex_base(b)}^{{2}}}}}}",
        ),
        Primitive("min", 2, torch.minimum, sympy.Min, lambda a, b: rf"\min\left({a}, {b}\right)"),
        Primitive("max", 2, torch.maximum, sympy.Max, lambda a, b: rf"\max\left({a}, {b}\right)"),
        Primitive("sign", 1, torch.sign, sympy.sign, lambda a: rf"\operatorname{{sign}}{_paren(a)}"),
        Primitive("square", 1, torch.square, lambda a: a**2, lambda a: f"{latex_base(a)}^{{2}}"),
        Primitive("abs", 1, torch.abs, sympy.Abs, lambda a: rf"\left|{a}\right|"),
        Primitive("tanh", 1, torch.tanh, sympy.tanh, lambda a: rf"\tanh{_paren(a)}"),
        Primitive(
            "log", 1, protected_log_torch,
            lambda a: sympy.log(sympy.Max(sympy.Abs(a), _EPS)),
            lambda a: rf"\log\left|{a}\right|",
        ),
        Primitive(
            "sqrt", 1, protected_sqrt_torch,
            lambda a: sympy.sqrt(sympy.Max(sympy.Abs(a), _EPS)),
            lambda a: rf"\sqrt{{\left|{a}\right|}}",
        ),
    )
}

#: Terminal names as written in prefix strings: the target, the prediction, and two constants.
TARGET = "y"
PREDICTION = "f"
CONSTANTS: dict[str, float] = {"1": 1.0, "-1": -1.0}
TERMINALS: tuple[str, ...] = (TARGET, PREDICTION, *CONSTANTS)

#: SymPy symbols for the two variable terminals (real-valued, so |x|^2 simplifies to x^2).
SYMBOL_Y = sympy.Symbol("y", real=True)
SYMBOL_F = sympy.Symbol("f", real=True)

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
