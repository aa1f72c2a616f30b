"""Gradient equivalence on a fixed probe batch (search_engine.expr.gradient_probe)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from search_engine.expr.gradient_probe import (
    PROBE_CLASSES,
    PROBE_ROWS,
    gradient_signature,
    output_gradient,
    probe_batch,
    rescales_baseline,
)
from search_engine.expr.losses import baseline_loss, make_loss
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, parse
from search_engine.expr.weighted import ParameterizedLoss

CE = "mul(-1, mul(y, log(f)))"
SE = "square(sub(f, y))"
TWO = "add(1, 1)"


def signature(text: str, kind: str) -> str | None:
    return gradient_signature(parse(text), kind)


def test_the_probe_batch_is_fixed_and_shaped_as_the_task_s_outputs():
    logits, classes = probe_batch("classification")
    assert logits.shape == (PROBE_ROWS, PROBE_CLASSES) and logits.dtype == torch.float64
    assert classes.shape == (PROBE_ROWS,) and 0 <= int(classes.min()) and int(classes.max()) < PROBE_CLASSES
    outputs, targets = probe_batch("regression")
    assert outputs.shape == targets.shape == (PROBE_ROWS,)
    probe_batch.cache_clear()  # drawn again from its seed: the same numbers
    assert torch.equal(probe_batch("classification")[0], logits) and torch.equal(probe_batch("regression")[1], targets)
    assert len(set(classes.tolist())) > 1 and float(outputs.std()) > 1.0  # not degenerate


@pytest.mark.parametrize(("kind", "left", "right"), [
    ("classification", CE, "mul(-1, mul(sign(y), log(abs(f))))"),
    # f summed over the classes is 1: adding it changes no gradient reaching the logits
    ("classification", CE, f"add({CE}, f)"),
    ("classification", "add(y, f)", "sub(f, y)"),  # both constant over the classes
    ("regression", SE, f"add({SE}, abs(y))"),  # plus a function of y alone
    ("regression", SE, "square(sub(y, f))"),
])
def test_losses_with_one_gradient_share_a_signature(kind, left, right):
    assert signature(left, kind) is not None and signature(left, kind) == signature(right, kind)


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_a_rescaled_loss_is_not_the_same_loss(kind):
    assert signature(SE, kind) != signature(f"mul({TWO}, {SE})", kind)
    assert signature(SE, kind) != signature(f"mul(-1, {SE})", kind)


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_distinct_losses_keep_distinct_signatures(kind):
    texts = [CE, SE, "abs(sub(f, y))", "mul(y, f)", "square(f)", "tanh(sub(f, y))", "mul(y, log(f))",
             f"mul({TWO}, {SE})", "max(y, f)", "sqrt(abs(sub(f, y)))", "mul(f, log(f))"]
    signatures = [signature(t, kind) for t in texts]
    assert None not in signatures and len(set(signatures)) == len(texts)


def test_signatures_are_the_same_in_another_process():
    texts = [CE, SE, "tanh(sub(f, y))", "mul(f, log(f))"]
    script = ("import sys; from search_engine.expr.tree import parse; "
              "from search_engine.expr.gradient_probe import gradient_signature as g\n"
              "for line in sys.stdin.read().splitlines(): print(g(parse(line), 'classification'), g(parse(line), 'regression'))\n")
    done = subprocess.run([sys.executable, "-c", script], input="\n".join(texts), capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.split() == [s for t in texts for s in (signature(t, "classification"), signature(t, "regression"))]


@pytest.mark.parametrize(("kind", "text", "factor"), [
    ("classification", CE, 1.0),
    ("classification", f"add({CE}, f)", 1.0),
    ("classification", f"mul({TWO}, {CE})", 2.0),
    ("classification", f"mul({CE}, add({TWO}, 1))", 3.0),
    ("regression", SE, 1.0),  # one output: summed over it or averaged, the same
    ("regression", f"mul({TWO}, {SE})", 2.0),
    ("regression", f"add({SE}, square(y))", 1.0),
])
def test_the_factor_of_a_rescaled_baseline_is_found(kind, text, factor):
    assert rescales_baseline(parse(text), kind) == pytest.approx(factor, rel=1e-9)


@pytest.mark.parametrize(("kind", "text"), [
    ("classification", SE),
    ("classification", "mul(y, log(f))"),  # -1 times cross-entropy: not a positive factor
    ("classification", "log(f)"),
    ("regression", "abs(sub(f, y))"),
    ("regression", f"mul(-1, {SE})"),
    ("regression", "y"),  # no gradient at all
])
def test_other_losses_do_not_rescale_the_baseline(kind, text):
    assert rescales_baseline(parse(text), kind) is None


def test_edge_weights_and_loss_functions_are_probed_alike():
    weights = [1.56] * 5  # mul(-1, mul(y, log(f))) has 5 edges; the one into f only shifts log f
    assert rescales_baseline(CROSS_ENTROPY, "classification", weights) == pytest.approx(1.56**4, rel=1e-9)
    module = ParameterizedLoss(CROSS_ENTROPY, "classification", weights=torch.full((5,), 1.56))
    assert rescales_baseline(module, "classification") == pytest.approx(1.56**4, rel=1e-6)  # float32 weights
    assert rescales_baseline(baseline_loss("regression"), "regression") == pytest.approx(1.0)
    tripled = baseline_loss("classification")
    assert rescales_baseline(lambda o, t: 3 * tripled(o, t), "classification") == pytest.approx(3.0)
    assert rescales_baseline(make_loss(SQUARED_ERROR, "regression"), "regression") == pytest.approx(1.0)


def test_a_loss_that_is_not_finite_on_the_probe_has_no_signature_or_factor():
    def infinite(outputs, targets):
        return (outputs / 0.0).sum()

    assert output_gradient(infinite, "regression") is None
    assert rescales_baseline(infinite, "regression") is None


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="loss must be an expression tree or a function"):
        rescales_baseline(SE, "regression")
    with pytest.raises(ValueError, match="weights"):
        rescales_baseline(baseline_loss("regression"), "regression", weights=[1.0])
    with pytest.raises(ValueError, match="expected 5 edge weights"):
        rescales_baseline(CROSS_ENTROPY, "classification", weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="unknown task kind 'ranking'"):
        rescales_baseline(CROSS_ENTROPY, "ranking")
    with pytest.raises(ValueError, match="unknown task kind 'ranking'"):
        gradient_signature(CROSS_ENTROPY, "ranking")
    with pytest.raises(ValueError, match="must return a scalar"):
        output_gradient(make_loss(SQUARED_ERROR, "regression", reduction="none"), "regression")
