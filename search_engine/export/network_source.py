"""Code generation for a network loss (`expr.network.NetworkLoss`): a standalone torch module.

The generated file imports only torch, embeds every weight at full precision (LAYERS, one
(out, in) matrix per bias-free linear layer, as ``torch.nn.Linear.weight``), prepares the inputs
exactly as `expr.losses.tree_inputs` does (softmax probabilities and one-hot targets, or
predictions and targets) and computes `expr.network.make_network_loss`'s value with the same
torch calls, one straight-line statement per layer, so it is TorchScript-compatible and
`torch_source.script_module` compiles it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search_engine.export.torch_source import (
    _CLASSIFICATION_PREPARE,
    _REGRESSION_PREPARE,
    INIT_SOURCE,
    REDUCE_SOURCE,
    docstring_footer,
    method_line,
)
from search_engine.expr.network import NetworkLoss

if TYPE_CHECKING:
    from search_engine.export.spec import LearnedLossSpec

_PAIRS = {
    "classification": (
        "input: logits of shape (batch, classes); target: integer class indices of shape (batch,),\n"
        "    as for torch.nn.CrossEntropyLoss. The network sees each class's pair (f_i, y_i):\n"
        "    f = softmax(input), y = one_hot(target)."
    ),
    "regression": (
        "input: predictions of shape (batch,) or (batch, K); target: the same shape ((batch,) and\n"
        "    (batch, 1) are interchangeable). The network sees each output's pair (f_i, y_i) = (input, target)."
    ),
}

_TORCH_FUNCTIONS = {"relu": "torch.relu", "softplus": "torch.nn.functional.softplus"}


def network_docstring(spec: LearnedLossSpec) -> str:
    """The generated file's docstring: architecture, formula, task, fitness, meta-test, usage."""
    net: NetworkLoss = spec.network
    summed = "classes" if spec.kind == "classification" else "outputs"
    return f"""Learned loss function, exported by lfl: a network loss learned by {spec.method_label}.
{method_line(spec)}

Loss: a small network applied to every pair (f_i, y_i) of a sample, summed over its {summed},
then averaged over the batch (reduction "mean").
Architecture: {net.architecture} (units per layer, the input pair first): bias-free linear layers,
{net.activation} between them, {net.output} on the output; {net.n_weights} weights (LAYERS below, full precision).
Formula (LaTeX):
    {net.latex()}
Fingerprint of the weights: #{net.fingerprint}

{docstring_footer(spec)}"""


def _row_literal(row: tuple[float, ...], per_line: int = 5) -> str:
    """One matrix row as a list literal at full precision (repr), `per_line` numbers per source line."""
    chunks = [", ".join(repr(w) for w in row[i: i + per_line]) for i in range(0, len(row), per_line)]
    return "        [" + ",\n         ".join(chunks) + "]"


def _layers_literal(net: NetworkLoss) -> str:
    """LAYERS as a Python literal: one list of rows per layer, every weight written with repr."""
    blocks = []
    for k, matrix in enumerate(net.layers):
        rows = ",\n".join(_row_literal(row) for row in matrix)
        blocks.append(f"    [  # layer {k}: {len(matrix)} x {len(matrix[0])}\n{rows},\n    ]")
    return "[\n" + ",\n".join(blocks) + ",\n]"


def _layer_statements(net: NetworkLoss) -> str:
    """One statement per layer, h: (batch, C, units); the last applies the output function."""
    lines = []
    for k in range(len(net.layers)):
        fn = _TORCH_FUNCTIONS[net.activation if k < len(net.layers) - 1 else net.output]
        weight = f"self.w{k}.to(device=f.device, dtype=f.dtype)"
        lines.append(f"        h = {fn}(torch.matmul(h, {weight}.t()))  # layer {k}\n")
    return "".join(lines)


def render_network_module(spec: LearnedLossSpec) -> str:
    """The source of a standalone module defining ``LearnedLoss(torch.nn.Module)`` for a network loss."""
    net: NetworkLoss = spec.network
    docstring = network_docstring(spec)
    if '"""' in docstring or docstring.endswith("\\"):  # user text is made plain; this guards the template
        raise ValueError("the module docstring must not contain triple quotes or end with a backslash")
    buffers = "".join(
        f'        self.register_buffer("w{k}", torch.tensor(LAYERS[{k}], dtype=torch.float64))\n'
        for k in range(len(net.layers))
    )
    prepare = _CLASSIFICATION_PREPARE if spec.kind == "classification" else _REGRESSION_PREPARE
    summed = "classes" if spec.kind == "classification" else "outputs"
    return f'''r"""{docstring}"""

import torch

#: Units per layer, the input pair (f_i, y_i) first.
WIDTHS = {list(net.widths)!r}
#: "classification" (logits and class indices) or "regression" (predictions and targets).
KIND = {spec.kind!r}
ACTIVATION = {net.activation!r}
OUTPUT = {net.output!r}
#: LAYERS[k]: layer k's weights, (out, in) as torch.nn.Linear.weight; no biases. Column 0 of
#: LAYERS[0] multiplies f_i, column 1 multiplies y_i.
LAYERS = {_layers_literal(net)}


class LearnedLoss(torch.nn.Module):
    """The learned network loss {net.architecture} ({net.activation}, {net.output}) #{net.fingerprint}.

    {_PAIRS[spec.kind]}
    The network's values are summed over the {summed} of each sample, then reduced over the
    batch: reduction "mean" (default), "sum", or "none" for one value per sample.
    """

{INIT_SOURCE}{buffers}
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
{prepare}        h = torch.stack((f, y), dim=-1)
{_layer_statements(net)}        per_sample = h.squeeze(-1).sum(dim=-1)
{REDUCE_SOURCE}'''
