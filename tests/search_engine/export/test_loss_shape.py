"""Loss shapes: closed forms of the known losses, weights, CSV output, the PNG path without matplotlib."""

from __future__ import annotations

import csv
import math
import sys

import pytest

from search_engine.export.loss_shape import loss_shape, write_csv, write_png
from search_engine.export.spec import LearnedLossSpec
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, parse, to_prefix


def test_cross_entropy_true_class_curve_is_minus_log_p_and_decreasing():
    shape = loss_shape(CROSS_ENTROPY, kind="classification", n_classes=10, grid=51)
    assert shape["kind"] == "classification" and shape["n_classes"] == 10
    p = shape["p"]
    assert len(p) == 51 and 0 < p[0] < p[-1] < 1
    assert p == pytest.approx([(k + 1) / 52 for k in range(51)])
    assert shape["loss_true"] == pytest.approx([-math.log(v) for v in p], rel=1e-12)
    assert all(a > b for a, b in zip(shape["loss_true"], shape["loss_true"][1:]))
    # One wrong class takes q, the true class the rest: -log(1 - q), increasing in q.
    assert shape["loss_wrong"] == pytest.approx([-math.log(1 - q) for q in p], rel=1e-12)


def test_squared_error_classification_curve_counts_every_class():
    shape = loss_shape(SQUARED_ERROR, kind="classification", n_classes=4, grid=5)
    want = [(1 - p) ** 2 + 3 * ((1 - p) / 3) ** 2 for p in shape["p"]]
    assert shape["loss_true"] == pytest.approx(want, rel=1e-12)
    assert shape["loss_wrong"] == pytest.approx([2 * q**2 for q in shape["p"]], rel=1e-12)


def test_squared_error_regression_curve_is_residual_squared():
    shape = loss_shape(SQUARED_ERROR, kind="regression", grid=41, target=2.5, residual_range=4.0)
    assert shape["kind"] == "regression" and shape["target"] == 2.5
    r = shape["residual"]
    assert len(r) == 41 and r[0] == -4.0 and r[-1] == 4.0 and 0.0 in r
    assert shape["loss"] == pytest.approx([v**2 for v in r], rel=1e-12, abs=1e-12)


def test_spec_weights_scale_the_nodes():
    # mul(-1, log(f)) with weights (w0, w1, w2): w0 * (-1) * w1 * log(w2 * p) on the true class.
    spec = LearnedLossSpec(
        expression=to_prefix(parse("mul(y, mul(-1, log(f)))")),
        weights=(1.0, 1.0, 0.5, 2.0, 3.0),
        kind="classification",
        dataset="digits",
        model="mlp",
        fitness=None,
        baseline_loss="cross_entropy",
        baseline_fitness=None,
        metric="error rate",
    )
    shape = loss_shape(spec, grid=9)
    assert shape["loss_true"] == pytest.approx(
        [-0.5 * 2.0 * math.log(3.0 * p) for p in shape["p"]], rel=1e-12
    )
    plain = loss_shape(spec, weights=(1.0,) * 5, grid=9)  # explicit weights override the spec's
    assert plain["loss_true"] == pytest.approx([-math.log(p) for p in plain["p"]], rel=1e-12)
    with pytest.raises(ValueError, match="contradicts"):
        loss_shape(spec, kind="regression")


def test_non_finite_values_become_none():
    shape = loss_shape("div(1, mul(y, tanh(f)))", kind="regression", grid=3)  # finite everywhere
    assert None not in shape["loss"]
    huge = loss_shape(
        "square(square(square(square(square(square(square(square(square(sub(y, f))))))))))",
        kind="regression",
        grid=3,
        residual_range=10.0,
    )
    assert huge["loss"][0] is None and huge["loss"][1] == 0.0 and huge["loss"][2] is None


def test_argument_errors():
    with pytest.raises(ValueError, match="kind .* is required when passing a tree"):
        loss_shape(CROSS_ENTROPY)
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2"):
        loss_shape(CROSS_ENTROPY, kind="classification", n_classes=1)
    with pytest.raises(ValueError, match="grid must be an integer >= 2"):
        loss_shape(CROSS_ENTROPY, kind="classification", grid=1)
    with pytest.raises(ValueError, match="expected 5 weights"):
        loss_shape(CROSS_ENTROPY, weights=(1.0,), kind="classification")
    with pytest.raises(TypeError, match="expected a LearnedLossSpec"):
        loss_shape(42, kind="classification")


def test_write_csv_classification_and_regression(tmp_path):
    shape = loss_shape(CROSS_ENTROPY, kind="classification", grid=3)
    path = write_csv(shape, tmp_path / "ce.csv")
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["p", "loss_true", "loss_wrong"] and len(rows) == 4
    assert [float(v) for v in rows[2]] == [0.5, pytest.approx(math.log(2)), pytest.approx(math.log(2))]
    reg = {"kind": "regression", "target": 0.0, "residual": [-1.0, 0.0, 1.0], "loss": [1.0, None, 1.0]}
    rows = list(csv.reader(write_csv(reg, tmp_path / "se.csv").open()))
    assert rows == [["residual", "loss"], ["-1.0", "1.0"], ["0.0", ""], ["1.0", "1.0"]]


def test_write_png_without_matplotlib_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed, even where it is
    shape = loss_shape(SQUARED_ERROR, kind="regression", grid=3)
    with pytest.raises(RuntimeError, match="matplotlib, which is not installed.*write_csv"):
        write_png(shape, tmp_path / "shape.png")
    assert not (tmp_path / "shape.png").exists()


def test_a_network_loss_on_its_own_takes_the_kind_given():
    from search_engine.expr.network import NetworkLoss

    net = NetworkLoss(layers=[[[1.0, -1.0], [0.5, 0.25]], [[1.0, 1.0]]])
    spec = LearnedLossSpec(expression="", weights=None, kind="classification", dataset="digits", model="mlp",
                           fitness=0.1, baseline_loss="cross_entropy", baseline_fitness=0.2, metric="error rate",
                           network=net.to_dict())
    assert loss_shape(net, kind="classification", grid=5) == loss_shape(spec, grid=5)
    with pytest.raises(ValueError, match="kind must be one of"):
        loss_shape(net)
    with pytest.raises(ValueError, match="no edge weights"):
        loss_shape(net, weights=(1.0,), kind="regression")
