"""Batch losses built from trees: agreement with torch's losses, gradients, vmap, validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from search_engine.expr.losses import BASELINE_TREES, REDUCTIONS, baseline_loss, make_loss
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, parse


def _classification_batch(batch: int = 8, classes: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=gen, dtype=torch.float64) * 2
    targets = torch.randint(0, classes, (batch,), generator=gen)
    return logits, targets


def _regression_batch(shape: tuple[int, ...] = (8,), seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    outputs = torch.randn(*shape, generator=gen, dtype=torch.float64)
    targets = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return outputs, targets


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_tree_equals_torch_cross_entropy(reduction):
    logits, targets = _classification_batch()
    got = make_loss(CROSS_ENTROPY, "classification", reduction)(logits, targets)
    want = F.cross_entropy(logits, targets, reduction=reduction)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(baseline_loss("classification", reduction)(logits, targets), want)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(8,), (8, 1)])
def test_squared_error_tree_equals_mse_for_one_output(reduction, shape):
    outputs, targets = _regression_batch(shape)
    got = make_loss(SQUARED_ERROR, "regression", reduction)(outputs, targets)
    want = F.mse_loss(outputs, targets, reduction=reduction)
    if reduction == "none":  # one value per sample: (B,), whether outputs were (B,) or (B, 1)
        want = want.reshape(8)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(baseline_loss("regression", reduction)(outputs, targets), want)


def test_squared_error_sums_over_outputs():
    outputs, targets = _regression_batch((8, 3))
    per_sample = make_loss(SQUARED_ERROR, "regression", "none")(outputs, targets)
    torch.testing.assert_close(per_sample, ((outputs - targets) ** 2).sum(dim=-1))
    # Summed over the K outputs, the mean is K times torch's mean over all elements.
    mean = make_loss(SQUARED_ERROR, "regression")(outputs, targets)
    torch.testing.assert_close(mean, 3 * F.mse_loss(outputs, targets))
    torch.testing.assert_close(baseline_loss("regression")(outputs, targets), F.mse_loss(outputs, targets))


def test_regression_reconciles_column_and_flat_targets():
    outputs, targets = _regression_batch((8,))
    loss = make_loss(SQUARED_ERROR, "regression")
    want = F.mse_loss(outputs, targets)
    torch.testing.assert_close(loss(outputs.unsqueeze(1), targets), want)
    torch.testing.assert_close(loss(outputs, targets.unsqueeze(1)), want)
    with pytest.raises(ValueError, match=r"targets of shape \(8, 2\) do not match outputs of shape \(8,\)"):
        loss(outputs, torch.zeros(8, 2, dtype=torch.float64))


def test_regression_float32_outputs_with_float64_targets():
    outputs, targets = _regression_batch((8, 2))
    got = make_loss(SQUARED_ERROR, "regression")(outputs.float(), targets)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), 2 * F.mse_loss(outputs, targets), rtol=1e-5, atol=1e-6)


def test_constant_and_target_only_trees_give_per_sample_values():
    logits, targets = _classification_batch(batch=4, classes=3)
    per_sample = make_loss(parse("1"), "classification", "none")(logits, targets)
    torch.testing.assert_close(per_sample, torch.full((4,), 3.0, dtype=torch.float64))
    total = make_loss(parse("y"), "classification", "sum")(logits, targets)  # one 1 per one-hot row
    torch.testing.assert_close(total, torch.tensor(4.0, dtype=torch.float64))


def test_gradcheck_classification_and_regression():
    logits, targets = _classification_batch(batch=3, classes=4)
    loss = make_loss(CROSS_ENTROPY, "classification")
    assert torch.autograd.gradcheck(lambda x: loss(x, targets), (logits.requires_grad_(True),))
    outputs, y = _regression_batch((3, 2))
    odd = make_loss(parse("add(abs(sub(f, y)), mul(tanh(f), sqrt(y)))"), "regression")
    assert torch.autograd.gradcheck(lambda x: odd(x, y), (outputs.requires_grad_(True),))


def test_gradient_matches_cross_entropy_gradient():
    logits, targets = _classification_batch()
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    make_loss(CROSS_ENTROPY, "classification")(a, targets).backward()
    F.cross_entropy(b, targets).backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize(
    ("kind", "tree", "shape"),
    [
        ("classification", CROSS_ENTROPY, (6, 4)),
        ("classification", parse("max(div(y, f), log(add(f, 1)))"), (6, 4)),
        ("regression", SQUARED_ERROR, (6, 2)),
        ("regression", parse("mul(sign(sub(y, f)), tanh(sub(f, 1)))"), (6,)),
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_vmap_over_population_equals_loop(kind, tree, shape, reduction):
    population = 5
    gen = torch.Generator().manual_seed(3)
    outputs = torch.randn(population, *shape, generator=gen, dtype=torch.float64)
    if kind == "classification":
        targets = torch.randint(0, shape[-1], shape[:1], generator=gen)
    else:
        targets = torch.randn(*shape, generator=gen, dtype=torch.float64)
    loss = make_loss(tree, kind, reduction)
    batched = vmap(loss, in_dims=(0, None))(outputs, targets)
    looped = torch.stack([loss(outputs[i], targets) for i in range(population)])
    torch.testing.assert_close(batched, looped)
    # Per-member targets too, and gradients through vmap.
    per_member = targets.expand(population, *targets.shape)
    torch.testing.assert_close(vmap(loss)(outputs, per_member), looped)
    grads = vmap(torch.func.grad(lambda o, t: loss(o, t).sum()), in_dims=(0, None))(outputs, targets)
    assert grads.shape == outputs.shape and torch.isfinite(grads).all()


def test_bad_kind_and_reduction_are_named():
    with pytest.raises(ValueError, match=r"unknown task kind 'ranking'; expected one of classification"):
        make_loss(SQUARED_ERROR, "ranking")
    with pytest.raises(ValueError, match=r"unknown reduction 'avg'; expected one of mean, sum, none"):
        make_loss(SQUARED_ERROR, "regression", "avg")
    with pytest.raises(ValueError, match="unknown task kind"):
        baseline_loss("ranking")
    with pytest.raises(ValueError, match="unknown reduction"):
        baseline_loss("regression", "max")


def test_bad_classification_inputs_are_named():
    logits, targets = _classification_batch()
    loss = make_loss(CROSS_ENTROPY, "classification")
    with pytest.raises(ValueError, match="integer class indices"):
        loss(logits, targets.double())
    with pytest.raises(ValueError, match=r"shape \(batch,\)"):
        loss(logits, targets[:3])
    with pytest.raises(ValueError, match=r"logits of shape \(batch, classes\)"):
        loss(logits[0], targets)


def test_baseline_trees_are_the_known_losses():
    assert BASELINE_TREES == {"classification": CROSS_ENTROPY, "regression": SQUARED_ERROR}
