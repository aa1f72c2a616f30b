"""LaTeX rendering for the exporters: a small standalone document (for an expression tree, or for a
network loss: its formula over the layers and its architecture). The tree's formulas are
`expr.formula`'s (text only); SymPy is imported only for a tree's simplified form."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from search_engine.expr import primitives as P
from search_engine.expr.formula import latex_number, to_latex, weighted_latex

if TYPE_CHECKING:
    from search_engine.export.spec import LearnedLossSpec


_SPECIALS = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "%": r"\%",
    "_": r"\_",
    "^": r"\^{}",
    "~": r"\~{}",
    "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    """Plain text made safe for LaTeX text mode (one line: newlines become spaces)."""
    return "".join(_SPECIALS.get(c, c) for c in " ".join(text.splitlines()))


def _symbols(spec: LearnedLossSpec) -> list[str]:
    """Itemize entries explaining the symbols and operations that occur in the loss."""
    ops = {node.op for _, node in spec.tree.walk()}
    if spec.kind == "classification":
        items = [
            r"$y$: the one-hot encoded target class (one entry per class)",
            r"$f(x)$: the model's softmax probabilities (one entry per class)",
        ]
    else:
        items = [r"$y$: the regression target", r"$f(x)$: the model's prediction"]
    eps = latex_number(P.PROTECT_EPS)
    if "log" in ops:
        items.append(
            rf"$\log\left|a\right|$: protected logarithm, $\log\max(|a|, \epsilon)$, $\epsilon = {eps}$"
        )
    if "sqrt" in ops:
        items.append(
            rf"$\sqrt{{\left|a\right|}}$: protected square root, $\sqrt{{\max(|a|, \epsilon)}}$, "
            rf"$\epsilon = {eps}$"
        )
    if "div" in ops:
        items.append(r"$\frac{a}{\sqrt{1 + b^{2}}}$: protected (analytic) division of $a$ by $b$")
    if "sign" in ops:
        items.append(r"$\operatorname{sign}(a)$: $-1$, $0$ or $1$")
    summed = "classes" if spec.kind == "classification" else "outputs"
    items.append(
        rf"the loss of a sample is $\ell$ summed over its {summed}; training averages it over the batch"
    )
    return items


def _opening(spec: LearnedLossSpec, comments: list[str], packages: tuple[str, ...]) -> list[str]:
    """The document's first lines: comments, preamble, the title and what the loss was learned for."""
    lines = [*comments, r"\documentclass{article}", *(rf"\usepackage{{{p}}}" for p in packages),
             r"\begin{document}", r"\section*{Learned loss}",
             f"Learned for {spec.kind} on \\texttt{{{latex_escape(spec.dataset)}}} with model "
             f"\\texttt{{{latex_escape(spec.model)}}}; {latex_escape(spec.validation_summary())}."]
    if spec.meta_test:
        lines.append(f"Meta-test: {latex_escape(spec.meta_test)}.")
    return lines


def latex_document(spec: LearnedLossSpec) -> str:
    """A small standalone LaTeX document: the formula, the weighted formula, the symbols
    (for a network loss: its formula over the layers and its architecture)."""
    if spec.network is not None:
        return _network_document(spec)
    from search_engine.expr.symbolic import to_simplified_latex  # SymPy: only here

    lines = _opening(spec, [
        f"% Learned loss exported by lfl, learned by {spec.method_label}; compile with pdflatex.",
        f"% expression: {spec.expression}",
        f"% weights: {'none' if spec.weights is None else json.dumps(list(spec.weights))}",
    ], ("amsmath",))
    lines += [
        "",
        r"\paragraph{Loss.}",
        r"\begin{equation*}",
        rf"  \ell\bigl(y, f(x)\bigr) = {to_latex(spec.tree)}",
        r"\end{equation*}",
        rf"\paragraph{{Simplified}} (the same loss for {spec.kind}):",
        r"\begin{equation*}",
        rf"  \ell\bigl(y, f(x)\bigr) = {to_simplified_latex(spec.tree, spec.kind)}",
        r"\end{equation*}",
    ]
    if spec.weights is not None:
        lines += [
            r"\paragraph{Learned weighted form} (weights rounded to 4 significant digits):",
            r"\begin{equation*}",
            rf"  \ell_w\bigl(y, f(x)\bigr) = {weighted_latex(spec.tree, spec.weights)}",
            r"\end{equation*}",
        ]
    lines += [r"\paragraph{Symbols.}", r"\begin{itemize}"]
    lines += [rf"  \item {item}" for item in _symbols(spec)]
    lines += [r"\end{itemize}", r"\end{document}", ""]
    return "\n".join(lines)


def _network_document(spec: LearnedLossSpec) -> str:
    """The document of a network loss: the formula over its layers, the architecture, the symbols."""
    net = spec.network
    summed = "classes" if spec.kind == "classification" else "outputs"
    pair = ("$f_i$ the softmax probability of class $i$, $y_i$ its one-hot target entry"
            if spec.kind == "classification" else "$f_i$ the prediction of output $i$, $y_i$ its target")
    lines = _opening(spec, [
        f"% Learned loss exported by lfl, a network loss learned by {spec.method_label}; compile with pdflatex.",
        f"% expression: {spec.expression}",
        f"% weights: {net.n_weights}, in the torch and JSON exports",
    ], ("amsmath", "amssymb"))
    lines += [
        "",
        r"\paragraph{Loss.}",
        r"\begin{equation*}",
        f"  {net.latex()}",
        r"\end{equation*}",
        rf"\paragraph{{Architecture.}} A network {'--'.join(map(str, net.widths))} (units per layer) applied to "
        rf"every pair $(f_i, y_i)$: {len(net.layers)} bias-free linear layers $W_1, \dots, W_{{{len(net.layers)}}}$, "
        rf"{latex_escape(net.activation)} between them and {latex_escape(net.output)} on the output; "
        rf"{net.n_weights} learned weights (fingerprint \#{net.fingerprint}).",
        r"\paragraph{Symbols.}",
        r"\begin{itemize}",
        rf"  \item {pair}",
        r"  \item $\operatorname{relu}(a) = \max(a, 0)$, $\operatorname{softplus}(a) = \log(1 + e^{a})$",
        rf"  \item the loss of a sample is summed over its {summed}; training averages it over the batch",
        r"\end{itemize}",
        r"\end{document}",
        "",
    ]
    return "\n".join(lines)
