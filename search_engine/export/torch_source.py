"""Code generation for the PyTorch exporters: a learned loss tree as a standalone torch module.

`render_module` walks the tree and writes one straight-line statement per node (children before
parents, one local variable ``v<i>`` per node, ``i`` its position in `Node.walk()`'s prefix order).
Each node is its primitive's torch text from the primitive table (the text the search's own torch
functions are compiled from), the protected operations written out inline with their constant, so
the file needs nothing but torch and computes exactly what `expr.losses.make_loss` computes. With
learned edge weights, ``weights[i]`` scales the output of node ``i + 1`` before its parent uses it.
Writing the source needs no torch (SymPy only, for the docstring's simplified formula); compiling
it with TorchScript does.

The generated file is TorchScript-compatible (annotated forward, no closures or lambdas, the
reduction kept as a str attribute); `script_module` compiles it and serializes it for
``torch.jit.load``.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from search_engine import catalog
from search_engine.expr import primitives as P
from search_engine.expr.formula import to_latex, weighted_latex
from search_engine.expr.tree import Node, to_prefix

if TYPE_CHECKING:
    from search_engine.export.spec import LearnedLossSpec

#: Name under which `script_module` imports the generated file (it appears in the .pt archive).
GENERATED_MODULE = "learned_loss"


def _terminal_expression(name: str) -> str:
    """y and f are the prepared inputs; constants are 0-d tensors in f's dtype and device."""
    if name == P.TARGET:
        return "y"
    if name == P.PREDICTION:
        return "f"
    return f"torch.full((), {P.CONSTANTS[name]!r}, dtype=f.dtype, device=f.device)"


def _comment(node: Node, limit: int = 60) -> str:
    text = to_prefix(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def node_statements(tree: Node, weighted: bool) -> list[str]:
    """Statements computing ``v0`` (the root's value) from ``y`` and ``f``, children first.

    With `weighted`, node i > 0 is scaled by ``w[i - 1]`` (a local tensor the caller defines).
    """
    lines: list[str] = []

    def emit(node: Node, i: int) -> int:
        """Emit node i's subtree (children first); return the prefix index after the subtree."""
        child_vars, nxt = [], i + 1
        for child in node.children:
            child_vars.append(f"v{nxt}")
            nxt = emit(child, nxt)
        if node.is_terminal:
            expr, one_call = _terminal_expression(node.op), True
        else:  # the primitive table's text: what the search computes
            primitive = P.PRIMITIVES[node.op]
            expr, one_call = primitive.torch_source(*child_vars), primitive.torch_is_call
        if weighted and i > 0:  # w * (a / h), not (w * a) / h: the search rounds the quotient first
            expr = f"w[{i - 1}] * {expr}" if one_call else f"w[{i - 1}] * ({expr})"
        lines.append(f"v{i} = {expr}  # node {i}: {_comment(node)}")
        return nxt

    emit(tree, 0)
    return lines


def _float_list(values: Sequence[float], indent: str, per_line: int = 4) -> str:
    """A Python list literal of floats at full precision (repr), wrapped a few per line."""
    if not values:
        return "[]"
    rows = [
        ", ".join(repr(float(v)) for v in values[i : i + per_line]) for i in range(0, len(values), per_line)
    ]
    inner = f",\n{indent}    ".join(rows)
    return f"[\n{indent}    {inner},\n{indent}]"


_CLASSIFICATION_PREPARE = """\
        if input.dim() != 2:
            raise ValueError("LearnedLoss: classification input must be logits of shape (batch, classes)")
        if target.is_floating_point() or target.dtype == torch.bool:
            raise ValueError("LearnedLoss: classification targets must be integer class indices")
        if target.dim() != 1 or target.shape[0] != input.shape[0]:
            raise ValueError("LearnedLoss: classification targets must have shape (batch,)")
        f = torch.softmax(input, dim=-1)
        classes = torch.arange(input.shape[1], device=input.device)
        y = (target.unsqueeze(-1) == classes).to(f.dtype)
"""

_REGRESSION_PREPARE = """\
        if input.dim() != 1 and input.dim() != 2:
            raise ValueError("LearnedLoss: regression input must have shape (batch,) or (batch, K)")
        if target.shape != input.shape:
            matched = False
            if input.dim() == 2 and target.dim() == 1:
                matched = input.shape[1] == 1 and input.shape[0] == target.shape[0]
            elif input.dim() == 1 and target.dim() == 2:
                matched = target.shape[1] == 1 and target.shape[0] == input.shape[0]
            if not matched:
                raise ValueError(
                    "LearnedLoss: regression target must have the same shape as input "
                    "((batch,) and (batch, 1) are interchangeable)"
                )
            target = target.reshape(input.shape)
        f = input
        y = target.to(f.dtype)
        if f.dim() == 1:
            f = f.unsqueeze(-1)
            y = y.unsqueeze(-1)
"""

#: The generated module's constructor (the reduction) and the end of its forward (reducing
#: `per_sample` over the batch): the same in every generated loss, TorchScript-compatible.
INIT_SOURCE = """\
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError("reduction must be 'mean', 'sum' or 'none', got " + repr(reduction))
        self.reduction = reduction
"""
REDUCE_SOURCE = """\
        if self.reduction == "mean":
            return per_sample.mean()
        if self.reduction == "sum":
            return per_sample.sum()
        if self.reduction == "none":
            return per_sample
        raise ValueError("reduction must be 'mean', 'sum' or 'none', got " + self.reduction)
"""

_CLASS_DOCS = {
    "classification": (
        "input: logits of shape (batch, classes); target: integer class indices of shape (batch,),\n"
        "    as for torch.nn.CrossEntropyLoss. The tree sees f = softmax(input) and y = one_hot(target)."
    ),
    "regression": (
        "input: predictions of shape (batch,) or (batch, K); target: the same shape ((batch,) and\n"
        "    (batch, 1) are interchangeable). The tree sees f = input and y = target."
    ),
}


_USAGE = {
    "classification": """\
    import torch
    from learned_loss import LearnedLoss   # this file, saved as learned_loss.py

    criterion = LearnedLoss()              # reduction="mean" (default), "sum" or "none"
    logits = model(x)                      # (batch, classes)
    loss = criterion(logits, labels)       # labels: (batch,) integer class indices
    loss.backward()""",
    "regression": """\
    import torch
    from learned_loss import LearnedLoss   # this file, saved as learned_loss.py

    criterion = LearnedLoss()              # reduction="mean" (default), "sum" or "none"
    pred = model(x)                        # (batch,) or (batch, K)
    loss = criterion(pred, targets)        # targets: the same shape as pred
    loss.backward()""",
}


def _plain(text: str) -> str:
    """User-provided text made safe for a raw docstring: printable, no double quotes or backslashes."""
    return "".join(c if c.isprintable() else "?" for c in text).replace("\\", "/").replace('"', "'")


def module_docstring(spec: LearnedLossSpec) -> str:
    """The generated file's docstring: formula, weights, symbols, task, fitness, meta-test, usage."""
    from search_engine.expr.symbolic import simplified_text  # SymPy: only for the simplified form

    tree = spec.tree
    if spec.weights is None:
        weights = "Weights: none; the loss is exactly the formula above."
    else:
        weights = (
            f"Learned edge weights: {len(spec.weights)} (WEIGHTS below, full precision); WEIGHTS[i] scales\n"
            "the output of node i + 1 of the prefix expression (the root is node 0) before its parent\n"
            "uses it. Weighted formula (LaTeX, weights rounded):\n"
            f"    {weighted_latex(tree, spec.weights)}"
        )
    if spec.kind == "classification":
        symbols = (
            "y is the one-hot target and f(x) the softmax of the logits; the loss is summed over classes"
        )
    else:
        symbols = "y is the target and f(x) the model's prediction; the loss is summed over outputs"
    return f"""Learned loss function, exported by lfl: learned by {spec.method_label}.
{method_line(spec)}

Formula (prefix):
    {spec.expression}
Formula (LaTeX):
    {to_latex(tree)}
Simplified for {spec.kind} (the same loss for this task):
    {simplified_text(tree, spec.kind)}
{weights}

Symbols: {symbols}
and averaged over the batch (reduction "mean"). Protected operations, as in the search:
log|a| = log(max(|a|, {P.EPS_TEXT})), sqrt|a| = sqrt(max(|a|, {P.EPS_TEXT})), div(a, b) = a / sqrt(1 + b^2).

{docstring_footer(spec)}"""


def method_line(spec: LearnedLossSpec) -> str:
    """What the method that learned the loss does, from the catalogue, wrapped for a docstring."""
    method = catalog.METHODS[spec.method]
    return textwrap.fill(f"{method.label}: {method.description}.", width=96)


def docstring_footer(spec: LearnedLossSpec) -> str:
    """The end of every generated docstring: task, validation fitness, meta-test, usage, TorchScript."""
    # the verdict at each loss's own best learning rate leads (export.spec.meta_test_summary)
    meta = textwrap.fill(f"Meta-test: {_plain(spec.meta_test)}", width=96) + "\n" if spec.meta_test else ""
    return f"""Task: {spec.kind} on dataset '{_plain(spec.dataset)}' with model '{_plain(spec.model)}'.
Search: {_plain(spec.validation_summary())}.
{meta}
Usage:
{_USAGE[spec.kind]}

TorchScript: torch.jit.script(LearnedLoss()) works on this file.
"""


def render_module(tree: Node, weights: Sequence[float] | None, kind: str, docstring: str) -> str:
    """The source of a standalone module defining ``LearnedLoss(torch.nn.Module)``.

    `docstring` becomes the module docstring (a raw string: it must not contain triple quotes).
    """
    if '"""' in docstring or docstring.endswith("\\"):
        raise ValueError("the module docstring must not contain triple quotes or end with a backslash")
    if kind not in _CLASS_DOCS:
        raise ValueError(f"unknown task kind {kind!r}")
    weighted = weights is not None
    body = node_statements(tree, weighted)
    if weighted:
        body.insert(0, "w = self.weights.to(device=f.device, dtype=f.dtype)")
    weights_literal = _float_list(weights, "") if weighted else "None"
    buffer = (
        '        self.register_buffer("weights", torch.tensor(WEIGHTS, dtype=torch.float64))\n'
        if weighted
        else ""
    )
    statements = "".join(f"        {line}\n" for line in body)
    prepare = _CLASSIFICATION_PREPARE if kind == "classification" else _REGRESSION_PREPARE
    summed = "classes" if kind == "classification" else "outputs"
    return f'''r"""{docstring}"""

import torch

#: The loss as a prefix expression over y (target) and f (prediction).
EXPRESSION = {to_prefix(tree)!r}
#: "classification" (logits and class indices) or "regression" (predictions and targets).
KIND = {kind!r}
#: Learned edge weights: WEIGHTS[i] scales the output of node i + 1 (prefix order of EXPRESSION,
#: the root is node 0) before its parent uses it. None: the plain symbolic loss.
WEIGHTS = {weights_literal}


class LearnedLoss(torch.nn.Module):
    """The learned loss {to_prefix(tree) if len(to_prefix(tree)) <= 60 else "(see EXPRESSION)"}.

    {_CLASS_DOCS[kind]}
    The tree is applied elementwise, summed over the {summed} of each sample, then reduced
    over the batch: reduction "mean" (default), "sum", or "none" for one value per sample.
    """

{INIT_SOURCE}{buffer}
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
{prepare}{statements}        per_sample = v0.expand_as(f).sum(dim=-1)
{REDUCE_SOURCE}'''


def load_generated(source: str, directory: Path, name: str = GENERATED_MODULE):
    """Import generated source (our own output, never user text) from a file in `directory`."""
    path = directory / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise RuntimeError(f"cannot import the generated module from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_module(source: str) -> bytes:
    """Compile the generated module with TorchScript and return ``torch.jit.save``'s bytes.

    The scripted module's reduction is "mean"; set ``loaded.reduction = "sum"`` (or "none")
    after ``torch.jit.load`` to change it (an unknown value raises when the loss is called).
    """
    import torch  # generating the source needs no torch; compiling it does

    with tempfile.TemporaryDirectory(prefix="lfl-export-") as tmp:
        module = load_generated(source, Path(tmp))
        # TorchScript reads the class's source and resolves its globals through sys.modules.
        previous = sys.modules.get(module.__name__)
        sys.modules[module.__name__] = module
        try:
            with warnings.catch_warnings():
                # torch 2.x marks TorchScript deprecated; the warning is about the API, not our file.
                warnings.filterwarnings(
                    "ignore", message=r"`torch\.jit\.(script|save)` is deprecated", category=FutureWarning
                )
                scripted = torch.jit.script(module.LearnedLoss())
                buffer = io.BytesIO()
                torch.jit.save(scripted, buffer)
        finally:
            if previous is None:
                sys.modules.pop(module.__name__, None)
            else:
                sys.modules[module.__name__] = previous
    return buffer.getvalue()
