"""A loss tree written as LaTeX from the primitive table's templates, with or without its learned
edge weights. Text only: neither torch nor SymPy is imported (the simplified forms, which need
SymPy, are `expr.symbolic`'s)."""

from __future__ import annotations

from search_engine.expr import primitives as P
from search_engine.expr.tree import Node


def to_latex(node: Node) -> str:
    """LaTeX that mirrors the tree, from the primitive table's templates."""
    if node.is_terminal:
        return P.TERMINAL_LATEX[node.op]
    return P.PRIMITIVES[node.op].latex(*(to_latex(c) for c in node.children))


def latex_number(w: float, digits: int = 4) -> str:
    """`w` rounded to `digits` significant digits, in LaTeX (negatives parenthesized)."""
    text = f"{w:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa} \\times 10^{{{int(exponent)}}}"
    return rf"\left({text}\right)" if w < 0 else text


def weighted_latex(tree: Node, weights: tuple[float, ...] | None, digits: int = 4) -> str:
    """LaTeX of the tree (as `to_latex` writes it) with node i + 1's value times its rounded weights[i]."""
    if weights is None:
        return to_latex(tree)

    def render(node: Node, i: int) -> tuple[str, int]:
        parts, nxt = [], i + 1
        for child in node.children:
            text, after = render(child, nxt)
            text = P.latex_factor(text)  # bracketed if a sum or negative: w times all of it
            parts.append(rf"{latex_number(weights[nxt - 1], digits)} \cdot {text}")
            nxt = after
        if node.is_terminal:
            return P.TERMINAL_LATEX[node.op], nxt
        return P.PRIMITIVES[node.op].latex(*parts), nxt

    return render(tree, 0)[0]
