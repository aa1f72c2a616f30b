"""A loss that is a small neural network (ML3's form), as a value, its JSON form and its torch forward.

The network maps one pair (f_i, y_i) to a non-negative number and is applied to every class
(classification: f_i the softmax probability of class i, y_i the one-hot target) or output
(regression: f_i the prediction, y_i the target) of a sample; the values are summed over
classes / outputs and reduced over the batch, exactly as `expr.losses.make_loss` treats a tree
(the same `tree_inputs` prepare both). Layers are linear maps without bias, stored like
`nn.Linear.weight` as (out, in) matrices; the first layer's input is the column [f_i, y_i] (f
first, as Bechtle et al.'s reference concatenates them), the last layer has one output. Hidden
layers use `activation`, the output `output` (softplus keeps the loss non-negative).

JSON form (`NetworkLoss.to_dict` / `NetworkLoss.from_dict`)::

    {"format": "lfl-network-loss", "version": 1, "activation": "relu", "output": "softplus",
     "layers": [[[w, w], ...  50 rows of 2], [[...] 50 rows of 50], [[...] 1 row of 50]]}

This module imports torch only in the functions that compute with it, so validating or
describing a stored network loss (a web page, a JSON file) never loads the numeric stack.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only
    from torch import Tensor

NETWORK_FORMAT = "lfl-network-loss"
NETWORK_VERSION = 1
INPUT_WIDTH = 2  # the pair (f_i, y_i)
#: Hidden-layer activations and output functions a network loss may use (name -> LaTeX operator).
ACTIVATIONS: dict[str, str] = {"relu": r"\operatorname{relu}"}
OUTPUTS: dict[str, str] = {"softplus": r"\operatorname{softplus}"}

Matrix = tuple[tuple[float, ...], ...]


def _matrix(value: Any, where: str) -> Matrix:
    """`value` as a non-empty rectangular matrix of finite floats; ValueError naming `where` otherwise."""
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{where} must be a non-empty list of rows, got {type(value).__name__}")
    rows = []
    for r, row in enumerate(value):
        if not isinstance(row, list | tuple) or not row:
            raise ValueError(f"{where}[{r}] must be a non-empty list of numbers, got {type(row).__name__}")
        if len(row) != len(value[0]):
            raise ValueError(f"{where}[{r}] has {len(row)} entries, but {where}[0] has {len(value[0])}")
        for c, w in enumerate(row):
            if isinstance(w, bool) or not isinstance(w, int | float):
                raise ValueError(f"{where}[{r}][{c}] must be a number, got {type(w).__name__}")
            if not math.isfinite(w):
                raise ValueError(f"{where}[{r}][{c}] must be finite, got {w!r}")
        rows.append(tuple(float(w) for w in row))
    return tuple(rows)


def _choice(name: str, value: Any, known: dict[str, str]) -> str:
    if value not in known:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, known))}, got {value!r}")
    return value


@dataclass(frozen=True)
class NetworkLoss:
    """A network loss: bias-free linear layers (out, in) with `activation` between them and `output` last.

    Validated on construction: the first layer takes the pair (f_i, y_i), each layer takes the
    previous layer's outputs, the last gives one number, every weight is a finite float.
    """

    layers: tuple[Matrix, ...]
    activation: str = "relu"
    output: str = "softplus"

    def __post_init__(self) -> None:
        if not isinstance(self.layers, list | tuple) or not self.layers:
            raise ValueError(f"layers must be a non-empty list of weight matrices, got {type(self.layers).__name__}")
        layers = tuple(_matrix(m, f"layers[{k}]") for k, m in enumerate(self.layers))
        width = INPUT_WIDTH
        for k, m in enumerate(layers):
            if len(m[0]) != width:
                takes = "the pair (f, y)" if k == 0 else f"layers[{k - 1}]'s {width} outputs"
                raise ValueError(f"layers[{k}] has rows of {len(m[0])} inputs, but it must take {takes}: {width}")
            width = len(m)
        if width != 1:
            raise ValueError(f"the last layer (layers[{len(layers) - 1}]) must have 1 output row, got {width}")
        object.__setattr__(self, "layers", layers)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("output", self.output, OUTPUTS)

    # ------------------------------------------------------------------ description

    @property
    def widths(self) -> tuple[int, ...]:
        """Units per layer, input first: (2, 50, 50, 1) for the reference architecture."""
        return (INPUT_WIDTH, *(len(m) for m in self.layers))

    @property
    def architecture(self) -> str:
        """e.g. "2-50-50-1"."""
        return "-".join(map(str, self.widths))

    @property
    def n_weights(self) -> int:
        return sum(len(m) * len(m[0]) for m in self.layers)

    @property
    def fingerprint(self) -> str:
        """Eight hex digits of a hash of the weights and functions: tells two network losses apart."""
        text = json.dumps([self.layers, self.activation, self.output])
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def expression(self) -> str:
        """The text that stands for this loss where a formula would (tables, keys, result files)."""
        return f"network loss {self.architecture} ({self.activation}, {self.output}) #{self.fingerprint}"

    def latex(self) -> str:
        """The loss as a formula over the layers, e.g. sum_i softplus(W_3 relu(W_2 relu(W_1 [f_i, y_i])))."""
        inner = r"\begin{bmatrix} f_i \\ y_i \end{bmatrix}"
        last = len(self.layers)
        for k in range(1, last):
            inner = rf"{ACTIVATIONS[self.activation]}\left(W_{{{k}}} {inner}\right)"
        shapes = r",\ ".join(rf"W_{{{k + 1}}} \in \mathbb{{R}}^{{{len(m)} \times {len(m[0])}}}"
                             for k, m in enumerate(self.layers))
        return rf"\ell(y, f) = \sum_i {OUTPUTS[self.output]}\left(W_{{{last}}} {inner}\right),\quad {shapes}"

    # ------------------------------------------------------------------ JSON and flat forms

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (module docstring); `from_dict` reads it back equal."""
        return {"format": NETWORK_FORMAT, "version": NETWORK_VERSION, "activation": self.activation,
                "output": self.output, "layers": [[list(row) for row in m] for m in self.layers]}

    @classmethod
    def from_dict(cls, data: Any) -> NetworkLoss:
        """A network loss from its JSON form; ValueError naming the problem for anything else."""
        if isinstance(data, NetworkLoss):
            return data
        if not isinstance(data, dict):
            raise ValueError(f"a network loss must be a JSON object, got {type(data).__name__}")
        if data.get("format") != NETWORK_FORMAT:
            raise ValueError(f"not a network loss: format is {data.get('format')!r}, expected {NETWORK_FORMAT!r}")
        version = data.get("version")
        if isinstance(version, bool) or version != NETWORK_VERSION:
            raise ValueError(f"unsupported network loss version {version!r}; this lfl reads version {NETWORK_VERSION}")
        unknown = sorted(set(data) - {"format", "version", "activation", "output", "layers"})
        if unknown:
            raise ValueError(f"unknown field(s) in a network loss: {', '.join(unknown)}")
        if "layers" not in data:
            raise ValueError("a network loss needs 'layers'")
        return cls(layers=data["layers"], activation=data.get("activation", "relu"),
                   output=data.get("output", "softplus"))

    def flat(self) -> tuple[float, ...]:
        """Every weight, layer after layer, row-major: the vector ML3's meta-gradient updates."""
        return tuple(w for m in self.layers for row in m for w in row)

    @classmethod
    def from_flat(cls, values: Sequence[float], widths: Sequence[int], activation: str = "relu",
                  output: str = "softplus") -> NetworkLoss:
        """The network of `widths` (input first) whose weights are `values` in `flat()`'s order."""
        expected = flat_size(widths)
        if len(values) != expected:
            raise ValueError(f"widths {tuple(widths)} need {expected} weights, got {len(values)}")
        layers, at = [], 0
        for n_in, n_out in zip(widths[:-1], widths[1:]):
            layers.append([list(values[at + r * n_in: at + (r + 1) * n_in]) for r in range(n_out)])
            at += n_in * n_out
        return cls(layers=layers, activation=activation, output=output)


def flat_size(widths: Sequence[int]) -> int:
    """Number of weights of bias-free layers of these widths (input first)."""
    return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def network_widths(hidden_units: int, hidden_layers: int) -> tuple[int, ...]:
    """(2, hidden, ..., hidden, 1): the widths of a network loss with `hidden_layers` hidden layers."""
    return (INPUT_WIDTH, *([hidden_units] * hidden_layers), 1)


# ---------------------------------------------------------------------- torch


def network_values(matrices: Sequence[Tensor], y: Tensor, f: Tensor, activation: str = "relu",
                   output: str = "softplus") -> Tensor:
    """The network on every pair (f[b, i], y[b, i]): (B, C) values from (B, C) inputs.

    `matrices` are the layers as (out, in) tensors in f's dtype and device.
    """
    import torch

    hidden = {"relu": torch.relu}[_choice("activation", activation, ACTIVATIONS)]
    last = {"softplus": torch.nn.functional.softplus}[_choice("output", output, OUTPUTS)]
    h = torch.stack((f, y), dim=-1)  # (B, C, 2)
    for k, w in enumerate(matrices):
        h = torch.matmul(h, w.t())  # (B, C, out_k)
        h = hidden(h) if k < len(matrices) - 1 else last(h)
    return h.squeeze(-1)  # (B, C)


def split_flat(flat: Tensor, widths: Sequence[int]) -> list[Tensor]:
    """A flat weight vector (`NetworkLoss.flat` order) as the layers' (out, in) matrices (views)."""
    matrices, at = [], 0
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        matrices.append(flat[at: at + n_in * n_out].view(n_out, n_in))
        at += n_in * n_out
    return matrices


def flat_network_loss(widths: Sequence[int], kind: str, activation: str = "relu",
                      output: str = "softplus") -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """(flat weights, outputs, targets) -> mean loss: the form ML3 differentiates through unrolled training."""
    from search_engine.expr.losses import tree_inputs

    def loss(flat: Tensor, outputs: Tensor, targets: Tensor) -> Tensor:
        y, f = tree_inputs(outputs, targets, kind)  # (B, C) each
        matrices = split_flat(flat.to(dtype=f.dtype), widths)
        return network_values(matrices, y, f, activation, output).sum(dim=-1).mean()

    return loss


def make_network_loss(net: NetworkLoss, kind: str, reduction: str = "mean", device=None):
    """A loss (outputs, targets) -> Tensor computing `net` as training uses it (module docstring).

    The weights are kept at full (float64) precision on `device` and cast to the outputs' dtype,
    as the exported module does, so a float32 model sees exactly the float32 weights ML3 learned.
    """
    import torch

    from search_engine.expr.losses import _check_reduction, reduce_batch, tree_inputs

    _check_reduction(reduction)
    stored = [torch.tensor(m, dtype=torch.float64, device=device) for m in net.layers]

    def loss(outputs: Tensor, targets: Tensor) -> Tensor:
        y, f = tree_inputs(outputs, targets, kind)  # (B, C) each
        matrices = [w.to(device=f.device, dtype=f.dtype) for w in stored]
        return reduce_batch(network_values(matrices, y, f, net.activation, net.output).sum(dim=-1), reduction)

    return loss
