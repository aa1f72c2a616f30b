"""Parameterized losses and the meta-gradient local search: exactness, meta-gradients, robustness."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch
from torch import nn
from torch.func import vmap

from search_engine.config import LocalSearchConfig, TrainingConfig, load_config
from search_engine.evolution import operators as gp
from search_engine.expr.compile import compile_tree
from search_engine.expr.losses import KINDS, REDUCTIONS, make_loss
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, Node, parse
from search_engine.expr.weighted import (
    ParameterizedLoss,
    compile_weighted,
    edge_count,
    init_weights,
    make_weighted_loss,
)
from search_engine.scoring.local_search import local_search, meta_objective, unroll_sgd
from search_engine.tasks.task import Task, load_task

from ..conftest import nan_tree

pytestmark = pytest.mark.usefixtures("one_thread")

# -------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def digits() -> Task:
    """digits + logistic regression, 300 training samples, float32 on the CPU."""
    config = load_config({"task": {"dataset": "digits", "model": "logistic", "max_train": 300}, "device": "cpu"})
    return load_task(config)


def _double(task: Task, model: str | None = None) -> Task:
    """The same task with float64 features (and float64 regression targets), optionally another model."""
    s = task.splits
    fields = {name: getattr(s, name).double() for name in ("x_train", "x_val", "x_test")}
    if s.y_train.is_floating_point():
        fields.update({name: getattr(s, name).double() for name in ("y_train", "y_val", "y_test")})
    return dataclasses.replace(task, splits=dataclasses.replace(s, **fields), model_name=model or task.model_name)


def _random_trees(count: int, seed: int) -> list[Node]:
    """Seeded random repaired trees of heights 1-4, grow and full."""
    rng = random.Random(seed)
    trees = []
    for i in range(count):
        tree = gp.random_tree(rng, 1 + i % 4, ("grow", "full")[i % 2])
        trees.append(gp.repair(rng, tree, max_height=5))
    return trees


def _batch(kind: str, seed: int, batch: int = 6, width: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 (outputs, targets) for a task kind."""
    gen = torch.Generator().manual_seed(seed)
    outputs = torch.randn(batch, width, generator=gen, dtype=torch.float64) * 2
    if kind == "classification":
        return outputs, torch.randint(0, width, (batch,), generator=gen)
    return outputs, torch.randn(batch, width, generator=gen, dtype=torch.float64)


# ----------------------------------------------------------------- parameterization


def test_edge_count_and_init_weights():
    tree = parse("mul(-1, mul(y, log(f)))")
    assert edge_count(tree) == tree.size() - 1 == 5
    assert edge_count(parse("f")) == 0 and init_weights(parse("f"), 0).shape == (0,)
    w = init_weights(tree, seed=7)
    assert w.shape == (5,) and w.dtype == torch.float32
    assert torch.all((w - 1).abs() < 0.01) and not torch.all(w == 1)
    torch.testing.assert_close(w, init_weights(tree, seed=7), rtol=0, atol=0)
    assert not torch.equal(w, init_weights(tree, seed=8))
    # The noise has std 0.001: over many edges its empirical std is close to that.
    big = parse("y")
    for _ in range(400):
        big = Node("add", (big, Node("f")))
    many = init_weights(big, seed=1)  # (800,)
    assert 0.0008 < float((many - 1).std()) < 0.0012


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unit_weights_reproduce_the_symbolic_tree(dtype):
    gen = torch.Generator().manual_seed(0)
    for tree in _random_trees(60, seed=1):
        ones = torch.ones(edge_count(tree))
        y = torch.randn(5, 3, generator=gen, dtype=dtype)
        f = torch.randn(1, 3, generator=gen, dtype=dtype)  # broadcasts against y
        got = compile_weighted(tree)(ones, y, f)
        want = compile_tree(tree)(y, f)
        assert got.shape == want.shape == (5, 3) and got.dtype == dtype
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_unit_weights_reproduce_make_loss(kind, reduction):
    for i, tree in enumerate(_random_trees(30, seed=2)):
        outputs, targets = _batch(kind, seed=i)
        got = make_weighted_loss(tree, kind, reduction)(torch.ones(edge_count(tree)), outputs, targets)
        want = make_loss(tree, kind, reduction)(outputs, targets)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def test_hand_checked_weights():
    # mul(-1, log(f)): prefix [mul, -1, log, f]; value = w0 * (-1) * w1 * log(w2 * f).
    fn = compile_weighted(parse("mul(-1, log(f))"))
    f = torch.tensor([0.2, 0.5], dtype=torch.float64)
    got = fn(torch.tensor([2.0, 0.5, 3.0]), torch.zeros(2, dtype=torch.float64), f)
    torch.testing.assert_close(got, torch.tensor([-math.log(0.6), -math.log(1.5)], dtype=torch.float64))
    # add(mul(y, f), f): prefix [add, mul, y, f, f]; value = w0 * (w1*y * w2*f) + w3*f.
    fn = compile_weighted(parse("add(mul(y, f), f)"))
    y, f = torch.tensor([3.0]), torch.tensor([5.0])
    assert float(fn(torch.tensor([2.0, 7.0, 11.0, 13.0]), y, f)) == 2 * (7 * 3 * 11 * 5) + 13 * 5
    # A constant-only tree still has the broadcast shape of y and f; its constants are weighted.
    out = compile_weighted(parse("sub(1, -1)"))(torch.tensor([3.0, 4.0]), torch.zeros(2, 1), torch.zeros(3))
    torch.testing.assert_close(out, torch.full((2, 3), 7.0))


def test_weighted_loss_validates_its_inputs():
    loss = make_weighted_loss(CROSS_ENTROPY, "classification")
    outputs, targets = _batch("classification", seed=0)
    with pytest.raises(ValueError, match=r"expected 5 edge weights of shape \(5,\), got \(4,\)"):
        loss(torch.ones(4), outputs, targets)
    with pytest.raises(ValueError, match="unknown task kind 'ranking'"):
        make_weighted_loss(CROSS_ENTROPY, "ranking")
    with pytest.raises(ValueError, match="unknown reduction 'avg'"):
        make_weighted_loss(CROSS_ENTROPY, "classification", "avg")
    with pytest.raises(ValueError, match="tree has 5 edges"):
        ParameterizedLoss(CROSS_ENTROPY, "classification", weights=torch.ones(3))


def test_parameterized_loss_module():
    module = ParameterizedLoss(CROSS_ENTROPY, "classification", seed=3)
    assert [p for p in module.parameters()] == [module.weights]
    torch.testing.assert_close(module.weights.detach(), init_weights(CROSS_ENTROPY, 3))
    outputs, targets = _batch("classification", seed=1)
    value = module(outputs.float(), targets)
    want = make_weighted_loss(CROSS_ENTROPY, "classification")(module.weights, outputs.float(), targets)
    torch.testing.assert_close(value, want)
    value.backward()
    assert module.weights.grad is not None and torch.isfinite(module.weights.grad).all()
    # Scaling the outer edge (-1) by 2 doubles cross-entropy: its gradient is loss / w0.
    unit = ParameterizedLoss(CROSS_ENTROPY, "classification", weights=torch.ones(5, dtype=torch.float64))
    loss = unit(outputs, targets)
    loss.backward()
    torch.testing.assert_close(unit.weights.grad[0], loss.detach())


@pytest.mark.parametrize(
    ("kind", "tree"),
    [
        ("classification", CROSS_ENTROPY),
        ("classification", parse("max(div(y, f), log(add(f, 1)))")),
        ("regression", SQUARED_ERROR),
        ("regression", parse("mul(sign(sub(y, f)), tanh(sub(f, 1)))")),
    ],
)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_vmap_over_a_population_of_weights_equals_loop(kind, tree, reduction):
    population = 6
    gen = torch.Generator().manual_seed(4)
    weights = 1 + 0.3 * torch.randn(population, edge_count(tree), generator=gen, dtype=torch.float64)  # (P, E)
    outputs, targets = _batch(kind, seed=5)
    loss = make_weighted_loss(tree, kind, reduction)
    batched = vmap(loss, in_dims=(0, None, None))(weights, outputs, targets)
    looped = torch.stack([loss(weights[i], outputs, targets) for i in range(population)])
    torch.testing.assert_close(batched, looped)
    # Per-member gradients with respect to the weights, through vmap, match a loop too.
    grad = torch.func.grad(lambda w: loss(w, outputs, targets).sum())
    torch.testing.assert_close(
        vmap(grad)(weights), torch.stack([grad(weights[i]) for i in range(population)])
    )


# ------------------------------------------------------------------------ inner loop


def test_unrolled_sgd_matches_torch_optim_sgd(digits):
    task = _double(digits, "mlp")
    training = TrainingConfig(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    loss = make_loss(CROSS_ENTROPY, "classification")
    x, y = task.splits.x_train, task.splits.y_train
    batches = [(x[i * 32 : (i + 1) * 32], y[i * 32 : (i + 1) * 32]) for i in range(3)]
    reference = task.new_model(0).double()
    optimizer = torch.optim.SGD(
        reference.parameters(), lr=training.lr, momentum=training.momentum, nesterov=True,
        weight_decay=training.weight_decay,
    )
    for xb, yb in batches:
        optimizer.zero_grad()
        loss(reference(xb), yb).backward()
        optimizer.step()
    model = task.new_model(0).double()
    params = {name: p.detach().requires_grad_(True) for name, p in model.named_parameters()}
    got = unroll_sgd(model, params, {}, loss, batches, training, create_graph=False)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(got[name], p.detach())


# ------------------------------------------------------------------- meta-gradients

_FD_TREE = parse("add(mul(-1, mul(y, log(f))), mul(square(sub(f, y)), 1))")


def _finite_difference(objective, weights: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central differences of a scalar function of a float64 vector."""
    grads = []
    for i in range(len(weights)):
        step = torch.zeros_like(weights)
        step[i] = eps
        grads.append((objective(weights + step) - objective(weights - step)) / (2 * eps))
    return torch.stack(grads)


@pytest.mark.parametrize(
    ("model", "inner_steps", "training"),
    [
        ("logistic", 1, TrainingConfig(lr=0.5)),
        ("logistic", 2, TrainingConfig(lr=0.5)),
        ("mlp", 2, TrainingConfig(lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ],
)
def test_meta_gradient_matches_finite_differences(digits, model, inner_steps, training):
    task = _double(digits, model)
    cfg = LocalSearchConfig(inner_steps=inner_steps, batch_size=32)
    gen = torch.Generator().manual_seed(0)
    weights = 1 + 0.2 * torch.randn(edge_count(_FD_TREE), generator=gen, dtype=torch.float64)

    def objective(w: torch.Tensor) -> torch.Tensor:
        return meta_objective(task, _FD_TREE, w, cfg, training, seed=5, step=3)

    w = weights.clone().requires_grad_(True)
    value = objective(w)
    assert value.dtype == torch.float64
    (analytic,) = torch.autograd.grad(value, w)
    with torch.no_grad():
        numeric = _finite_difference(objective, weights)
    assert analytic.abs().max() > 1e-3  # the weights really matter, so the comparison means something
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-7)


class _BatchNormTask:
    """A duck-typed task whose model has BatchNorm: (Linear, BatchNorm1d, ReLU, Linear) on digits."""

    def __init__(self, task: Task) -> None:
        self.splits, self.kind = task.splits, task.kind

    def new_model(self, seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            return nn.Sequential(
                nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10)
            )


def test_meta_gradient_through_batchnorm(digits):
    task = _BatchNormTask(_double(digits))
    cfg = LocalSearchConfig(inner_steps=2, batch_size=32)
    training = TrainingConfig(lr=0.5)
    weights = torch.linspace(0.8, 1.2, edge_count(CROSS_ENTROPY), dtype=torch.float64)

    def objective(w: torch.Tensor) -> torch.Tensor:
        return meta_objective(task, CROSS_ENTROPY, w, cfg, training, seed=1, step=0)

    w = weights.clone().requires_grad_(True)
    (analytic,) = torch.autograd.grad(objective(w), w)
    with torch.no_grad():
        numeric = _finite_difference(objective, weights)
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_meta_objective_is_deterministic_per_seed_and_step(digits):
    cfg, training = LocalSearchConfig(batch_size=64), TrainingConfig(lr=0.1)
    w = init_weights(CROSS_ENTROPY, 0)
    a = meta_objective(digits, CROSS_ENTROPY, w, cfg, training, seed=0, step=0)
    assert float(a) == float(meta_objective(digits, CROSS_ENTROPY, w, cfg, training, seed=0, step=0))
    assert float(a) != float(meta_objective(digits, CROSS_ENTROPY, w, cfg, training, seed=0, step=1))
    assert float(a) != float(meta_objective(digits, CROSS_ENTROPY, w, cfg, training, seed=1, step=0))


# ---------------------------------------------------------------------- local search


def _held_out_objective(task: Task, weights: tuple[float, ...], cfg, training, seeds) -> float:
    """Mean meta-objective over fixed (seed, step) pairs that local search never visits."""
    w = torch.tensor(weights)
    with torch.no_grad():
        values = [
            float(meta_objective(task, CROSS_ENTROPY, w, cfg, training, seed, 10_000 + step))
            for seed in seeds
            for step in range(4)
        ]
    return sum(values) / len(values)


def test_local_search_improves_cross_entropy_weights(digits):
    cfg = LocalSearchConfig(meta_steps=20, meta_lr=0.05, batch_size=64)
    training = TrainingConfig(lr=0.05)
    seeds = (0, 1, 2)
    before, after = [], []
    for seed in seeds:
        result = local_search(digits, CROSS_ENTROPY, cfg, training, seed)
        assert result.skipped_steps == 0 and len(result.meta_losses) == 20
        assert all(v is not None and math.isfinite(v) for v in result.meta_losses)
        assert result.initial_weights == tuple(init_weights(CROSS_ENTROPY, seed).tolist())
        assert max(abs(a - b) for a, b in zip(result.weights, result.initial_weights)) > 0.1
        before.append(_held_out_objective(digits, result.initial_weights, cfg, training, seeds))
        after.append(_held_out_objective(digits, result.weights, cfg, training, seeds))
    assert sum(after) / len(after) < sum(before) / len(before) - 0.02


def test_local_search_is_deterministic_given_seed(digits):
    cfg = LocalSearchConfig(meta_steps=3, meta_lr=0.01, batch_size=32)
    training = TrainingConfig(lr=0.1)
    tree = _random_trees(1, seed=5)[0]
    a = local_search(digits, tree, cfg, training, seed=4)
    b = local_search(digits, tree, cfg, training, seed=4)
    c = local_search(digits, tree, cfg, training, seed=5)
    assert (a.weights, a.initial_weights, a.meta_losses) == (b.weights, b.initial_weights, b.meta_losses)
    assert a.weights != c.weights and a.meta_losses != c.meta_losses
    assert a.seconds > 0


def test_local_search_survives_a_nan_loss(digits):
    tree = nan_tree()
    outputs, targets = _batch("classification", seed=0)
    assert torch.isnan(make_weighted_loss(tree, "classification")(
        init_weights(tree, 0), outputs.float(), targets
    ))
    cfg = LocalSearchConfig(meta_steps=3, batch_size=32)
    result = local_search(digits, tree, cfg, TrainingConfig(), seed=0)
    assert result.skipped_steps == 3 and result.meta_losses == (None, None, None)
    assert result.weights == result.initial_weights
    assert all(math.isfinite(v) for v in result.weights)


def test_local_search_on_trees_without_usable_weights(digits):
    cfg = LocalSearchConfig(meta_steps=2, batch_size=32)
    lone = local_search(digits, parse("f"), cfg, TrainingConfig(), seed=0)  # no edges at all
    assert lone.weights == () and lone.skipped_steps == 0
    assert all(v is not None for v in lone.meta_losses)
    constant = local_search(digits, parse("add(1, -1)"), cfg, TrainingConfig(), seed=0)  # no graph to params
    assert constant.skipped_steps == 0 and constant.weights == constant.initial_weights
