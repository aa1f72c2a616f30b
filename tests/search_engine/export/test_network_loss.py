"""The network-loss value: its JSON form, its validation and its torch forward against nn.Sequential."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from search_engine.expr.losses import REDUCTIONS
from search_engine.expr.network import NetworkLoss, flat_network_loss, make_network_loss

ROOT = Path(__file__).resolve().parents[3]
_GEN = torch.Generator().manual_seed(11)


def _randn(*shape):
    return torch.randn(*shape, generator=_GEN, dtype=torch.float64)


def random_network(widths=(2, 6, 5, 1), seed=0) -> NetworkLoss:
    g = torch.Generator().manual_seed(seed)
    layers = [torch.randn(b, a, generator=g, dtype=torch.float64).tolist() for a, b in zip(widths[:-1], widths[1:])]
    return NetworkLoss(layers=layers)


def sequential_of(net: NetworkLoss) -> torch.nn.Sequential:
    """The reference architecture as torch modules: Linear (no bias), ReLU between, Softplus last."""
    modules = []
    for k, matrix in enumerate(net.layers):
        linear = torch.nn.Linear(len(matrix[0]), len(matrix), bias=False).double()
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(matrix, dtype=torch.float64))
        modules += [linear, torch.nn.ReLU() if k < len(net.layers) - 1 else torch.nn.Softplus()]
    return torch.nn.Sequential(*modules)


def reference(net: NetworkLoss, kind: str, reduction: str):
    """Bechtle et al.'s reading: the network on each class's (f_i, y_i) column pair, summed over classes."""
    seq = sequential_of(net)

    def loss(outputs, targets):
        if kind == "classification":
            f, y = torch.softmax(outputs, dim=1), F.one_hot(targets, outputs.shape[1]).double()
        else:
            f = outputs.reshape(len(outputs), -1)
            y = targets.reshape(f.shape).double()
        per_class = [seq(torch.cat((f[:, i:i + 1], y[:, i:i + 1]), dim=1)) for i in range(f.shape[1])]
        per_sample = torch.stack(per_class).sum(dim=0).squeeze(-1)
        return {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]

    return loss


def test_the_json_form_round_trips_and_describes_the_network():
    net = random_network()
    data = json.loads(json.dumps(net.to_dict()))
    assert data["format"] == "lfl-network-loss" and data["version"] == 1
    assert NetworkLoss.from_dict(data) == net
    assert net.widths == (2, 6, 5, 1) and net.architecture == "2-6-5-1" and net.n_weights == 12 + 30 + 5
    assert net.expression == f"network loss 2-6-5-1 (relu, softplus) #{net.fingerprint}"
    assert random_network(seed=1).fingerprint != net.fingerprint
    assert NetworkLoss.from_flat(net.flat(), net.widths) == net
    latex = net.latex()
    assert r"\operatorname{softplus}" in latex and r"\mathbb{R}^{6 \times 2}" in latex and "W_{3}" in latex


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: {**d, "format": "lfl-learned-loss"}, "not a network loss: format is 'lfl-learned-loss'"),
    (lambda d: {**d, "version": 2}, "unsupported network loss version 2"),
    (lambda d: {**d, "version": True}, "unsupported network loss version True"),
    (lambda d: {k: v for k, v in d.items() if k != "layers"}, "a network loss needs 'layers'"),
    (lambda d: {**d, "extra": 1}, "unknown field(s) in a network loss: extra"),
    (lambda d: {**d, "layers": []}, "layers must be a non-empty list"),
    (lambda d: {**d, "layers": "x"}, "layers must be a non-empty list"),
    (lambda d: {**d, "activation": "tanh"}, "activation must be one of 'relu', got 'tanh'"),
    (lambda d: {**d, "output": "exp"}, "output must be one of 'softplus', got 'exp'"),
    (lambda d: {**d, "layers": [[[1.0, 2.0, 3.0]]]}, "layers[0] has rows of 3 inputs, but it must take the pair (f, y): 2"),
    (lambda d: {**d, "layers": [[[1.0, 2.0], [1.0]], [[1.0, 1.0]]]}, "layers[0][1] has 1 entries, but layers[0][0] has 2"),
    (lambda d: {**d, "layers": [[[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0, 1.0]]]},
     "layers[1] has rows of 3 inputs, but it must take layers[0]'s 2 outputs: 2"),
    (lambda d: {**d, "layers": [[[1.0, 2.0], [3.0, 4.0]]]}, "the last layer (layers[0]) must have 1 output row, got 2"),
    (lambda d: {**d, "layers": [[[1.0, float("nan")]]]}, "layers[0][0][1] must be finite, got nan"),
    (lambda d: {**d, "layers": [[[1.0, True]]]}, "layers[0][0][1] must be a number, got bool"),
    (lambda d: {**d, "layers": [[["1", 2.0]]]}, "layers[0][0][0] must be a number, got str"),
    (lambda d: {**d, "layers": [[[]]]}, "layers[0][0] must be a non-empty list of numbers"),
])
def test_a_bad_dict_gets_an_error_naming_the_problem(change, message):
    with pytest.raises(ValueError) as caught:
        NetworkLoss.from_dict(change(random_network().to_dict()))
    assert message in str(caught.value)


def test_not_a_dict_is_refused():
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        NetworkLoss.from_dict([1, 2])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("kind", "outputs", "targets"), [
    ("classification", _randn(7, 4) * 3, torch.tensor([0, 1, 2, 3, 3, 2, 0])),
    ("regression", _randn(7), _randn(7)),
    ("regression", _randn(7, 3), _randn(7, 3)),
    ("regression", _randn(7, 1), _randn(7)),
])
def test_the_forward_is_the_reference_network_on_every_class(kind, outputs, targets, reduction):
    net = random_network()
    got = make_network_loss(net, kind, reduction)(outputs, targets)
    want = reference(net, kind, reduction)(outputs, targets)
    assert got.dtype == torch.float64 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert bool((make_network_loss(net, kind, "none")(outputs, targets) > 0).all())  # softplus: positive


def test_the_flat_form_ml3_differentiates_is_the_same_loss():
    net = random_network()
    logits, labels = _randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    flat = torch.tensor(net.flat(), dtype=torch.float64, requires_grad=True)
    value = flat_network_loss(net.widths, "classification")(flat, logits, labels)
    torch.testing.assert_close(value, make_network_loss(net, "classification")(logits, labels), rtol=0, atol=0)
    (grad,) = torch.autograd.grad(value, flat)
    assert grad.shape == flat.shape and bool(torch.isfinite(grad).all())


def test_float32_outputs_see_the_float32_weights():
    net = random_network((2, 4, 1))
    logits, labels = torch.randn(3, 5, generator=_GEN), torch.tensor([0, 4, 2])
    value = make_network_loss(net, "classification")(logits, labels)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, reference(net, "classification", "mean")(logits.double(), labels).float())


def test_bad_inputs_and_reductions_are_refused():
    loss = make_network_loss(random_network(), "classification")
    with pytest.raises(ValueError, match="integer class indices"):
        loss(torch.randn(3, 4), torch.randn(3))
    with pytest.raises(ValueError, match="unknown reduction 'avg'"):
        make_network_loss(random_network(), "regression", "avg")


def test_reading_a_network_loss_needs_no_numeric_stack():
    code = ("import sys; from search_engine.expr.network import NetworkLoss\n"
            "n = NetworkLoss(layers=[[[1.0, 2.0], [0.5, -1.0]], [[1.0, 1.0]]]); n.expression; n.latex()\n"
            "print(sorted(m for m in ('torch', 'sympy', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
