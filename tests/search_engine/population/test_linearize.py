"""The shared-point linearization and the exact one-step meta-gradient built on it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.func import functional_call, jvp, vjp, vmap

from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, parse
from search_engine.expr.weighted import init_weights
from search_engine.population import linearize
from search_engine.population.linearize import Linearization
from search_engine.population.local_search import (
    _population_objective,
    _weighted_population_loss,
    first_step_objective,
    local_search_population,
    uses_shared_start,
)
from search_engine.population.training import population_grads
from search_engine.tasks.networks import AllCNNC, LeNet5, build_model
from search_engine.tasks.task import load_task

from ..conftest import nan_tree, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _chains():
    """Layer chains covering every layer kind the linearization supports, with inputs."""
    gen = torch.Generator().manual_seed(0)
    strided = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False), nn.ReLU(), nn.Conv2d(4, 3, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Identity(), nn.Dropout(0.0),
    )
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3, bias=False))
    return [
        ("lenet5", LeNet5(1, 28, 28, 10), torch.randn(5, 1, 28, 28, generator=gen)),
        ("allcnnc", AllCNNC(3, 4), torch.randn(2, 3, 12, 12, generator=gen)),
        ("strided", strided, torch.randn(3, 2, 7, 7, generator=gen)),
        ("mlp", mlp, torch.randn(6, 3, 4, generator=gen)),
    ]


def _reference(model, params, x):
    """torch.func's VJP and JVP functions of the model's outputs with respect to its parameters."""
    fn = lambda p: functional_call(model, p, (x,))  # noqa: E731
    out, pullback = vjp(fn, params)
    return out, (lambda c: vmap(pullback)(c)[0]), vmap(lambda t: jvp(fn, (params,), (t,))[1])


@pytest.mark.parametrize("cols", [True, False], ids=["unfolded", "library"])
@pytest.mark.parametrize("name, model, x", _chains(), ids=lambda v: v if isinstance(v, str) else "")
def test_vjp_and_jvp_equal_torch_func(name, model, x, cols, monkeypatch):
    if not cols:  # the weight gradient through the library's convolution backward
        monkeypatch.setattr(linearize, "_COLS_BYTES", 0)
    model = model.double()
    x = x.double()
    params = {n: p.detach() for n, p in model.named_parameters()}
    out, ref_vjp, ref_jvp = _reference(model, params, x)
    lin = Linearization.at(model, params, x)
    torch.testing.assert_close(lin.output, out)
    gen = torch.Generator().manual_seed(1)
    cot = torch.randn(3, *out.shape, generator=gen, dtype=torch.float64)  # (P, B, n_out)
    want, got = ref_vjp(cot), lin.vjp(cot)
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-10, atol=1e-12, msg=k)
    tangents = {k: torch.randn(3, *v.shape, generator=gen, dtype=torch.float64) for k, v in params.items()}
    torch.testing.assert_close(lin.jvp(tangents), ref_jvp(tangents), rtol=1e-10, atol=1e-12)


def test_relu_and_max_pool_follow_autograd_at_ties_and_zeros():
    # Many exact zeros before the ReLU and tied maxima in the pooling windows: gradient routing
    # must be autograd's (ReLU passes where its output is positive; the pool's argmax index).
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    x = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, -1.0, 1.0, 1.0], [2.0, 2.0, -3.0, 0.0], [2.0, 2.0, 0.0, 0.0]])
    x = x.view(1, 1, 4, 4)
    params = {n: p.detach() for n, p in model.named_parameters()}
    out, ref_vjp, ref_jvp = _reference(model, params, x)
    lin = Linearization.at(model, params, x)
    cot = torch.arange(1.0, 1 + 2 * out.numel()).view(2, *out.shape)
    torch.testing.assert_close(lin.vjp(cot)["0.weight"], ref_vjp(cot)["0.weight"])
    tangents = {"0.weight": torch.tensor([1.0, -2.0]).view(2, 1, 1, 1, 1).expand(2, 2, 1, 1, 1).clone()}
    torch.testing.assert_close(lin.jvp(tangents), ref_jvp(tangents))


def test_a_model_that_is_not_a_chain_is_refused_by_name():
    model = build_model("resnet18", load_task(tiny_config(task={"dataset": "digits28"})).info, 0)
    with pytest.raises(ValueError, match="ResNet is not a supported layer chain"):
        Linearization.at(model, dict(model.named_parameters()), torch.zeros(1, 1, 28, 28))


# ------------------------------------------------------------------ the one-step meta-gradient


TREES = [SQUARED_ERROR, parse("sqrt(abs(sub(f, y)))"), CROSS_ENTROPY, parse("div(square(sub(f, y)), tanh(f))"),
         parse("max(mul(y, log(f)), min(f, -1))")]


@pytest.mark.parametrize("training", [
    {"momentum": 0.0},
    {"momentum": 0.9},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.0005},
], ids=["sgd", "momentum", "nesterov-wd"])
@pytest.mark.parametrize("task_cfg", [
    {"model": "mlp"},
    {"dataset": "digits28", "model": "lenet5", "max_train": 100},
    {"dataset": "diabetes", "model": "mlp"},
], ids=["mlp", "lenet5", "regression"])
def test_first_step_objective_equals_the_unrolled_program(task_cfg, training):
    # In float64: the two programs order their sums differently, and an ill-conditioned member
    # (cross-entropy's -y/f on raw regression outputs) amplifies float32 rounding into the 1e-5
    # range on some CPUs' kernels; in float64 they must agree far below any algorithmic error.
    config = tiny_config(task=task_cfg, training=training, local_search={"batch_size": 16})
    task = load_task(config)
    task = dataclasses.replace(task, splits=_as_double(task.splits))
    loss = _weighted_population_loss(TREES, task.kind)
    weights = [init_weights(t, 0).double().requires_grad_(True) for t in TREES]
    assert uses_shared_start(task, config.local_search)
    for step in range(2):
        want_values = _population_objective(task, loss, weights, config.local_search, config.training, 5, step)
        want_grads = population_grads(want_values, weights)
        values, grads = first_step_objective(task, loss, weights, config.local_search, config.training, 5, step)
        assert values.dtype == torch.float64
        torch.testing.assert_close(values, want_values.detach(), rtol=1e-10, atol=1e-12)
        for g, w in zip(grads, want_grads):
            # Relative to the largest component: rounding of edges whose exact gradient is ~0.
            torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10 * max(1.0, float(w.abs().max())))


def test_first_step_objective_keeps_a_non_finite_member_to_itself():
    config = tiny_config(task={"model": "mlp"}, local_search={"batch_size": 16})
    task = load_task(config)
    trees = [nan_tree(), SQUARED_ERROR]
    loss = _weighted_population_loss(trees, task.kind)
    weights = [init_weights(t, 0).requires_grad_(True) for t in trees]
    values, grads = first_step_objective(task, loss, weights, config.local_search, config.training, 0, 0)
    alone, alone_grads = first_step_objective(task, _weighted_population_loss(trees[1:], task.kind), weights[1:],
                                              config.local_search, config.training, 0, 0)
    assert not (torch.isfinite(values[0]) and bool(torch.isfinite(grads[0]).all()))
    torch.testing.assert_close(values[1:], alone)
    torch.testing.assert_close(grads[1], alone_grads[0])


def test_the_unrolled_program_serves_several_inner_steps_and_batchnorm_models():
    several = tiny_config(task={"model": "mlp"}, local_search={"inner_steps": 2})
    assert not uses_shared_start(load_task(several), several.local_search)
    resnet = tiny_config(task={"dataset": "digits28", "model": "resnet18", "max_train": 60})
    assert not uses_shared_start(load_task(resnet), resnet.local_search)


def test_first_step_objective_in_float64_matches_finite_differences():
    config = tiny_config(task={"model": "mlp"}, local_search={"batch_size": 16},
                         training={"momentum": 0.9, "nesterov": True, "weight_decay": 0.01})
    task = load_task(config)
    task = dataclasses.replace(task, splits=_as_double(task.splits))
    tree = parse("add(square(sub(f, y)), mul(-1, mul(y, log(f))))")
    loss = _weighted_population_loss([tree], task.kind)
    w = init_weights(tree, 0).double().requires_grad_(True)
    _, (grad,) = first_step_objective(task, loss, [w], config.local_search, config.training, 1, 0)
    eps = 1e-6
    for i in range(len(w)):
        bump = torch.zeros_like(w)
        bump[i] = eps
        hi = first_step_objective(task, loss, [(w + bump).detach().requires_grad_(True)], config.local_search,
                                  config.training, 1, 0)[0]
        lo = first_step_objective(task, loss, [(w - bump).detach().requires_grad_(True)], config.local_search,
                                  config.training, 1, 0)[0]
        assert float(grad[i]) == pytest.approx(float((hi - lo) / (2 * eps)), rel=1e-5, abs=1e-9)


def _as_double(splits):
    """The splits with floating tensors in float64 (the model follows x_train's dtype)."""
    fields = {f.name: getattr(splits, f.name) for f in dataclasses.fields(splits)}
    return dataclasses.replace(splits, **{k: v.double() for k, v in fields.items()
                                           if isinstance(v, torch.Tensor) and v.is_floating_point()})


def test_batched_local_search_gives_the_same_weights_either_way():
    config = tiny_config(task={"dataset": "digits28", "model": "lenet5", "max_train": 100},
                         local_search={"mode": "all", "meta_steps": 3, "batch_size": 16},
                         training={"momentum": 0.9, "nesterov": True, "weight_decay": 0.0005})
    task = load_task(config)
    trees = [SQUARED_ERROR, parse("sqrt(abs(sub(f, y)))"), parse("div(square(sub(f, y)), tanh(f))")]
    shared = local_search_population(task, trees, config.local_search, config.training, config.seed)
    unrolled = local_search_population(task, trees, config.local_search, config.training, config.seed, unrolled=True)
    for a, b in zip(shared, unrolled):
        torch.testing.assert_close(torch.tensor(a.weights), torch.tensor(b.weights), rtol=1e-5, atol=1e-6)
        assert a.meta_losses == pytest.approx(b.meta_losses, rel=1e-5)
        assert a.skipped_steps == b.skipped_steps == 0
