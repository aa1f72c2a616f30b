"""The batched (population) evaluator equals the sequential one: fitness, rejection, local search."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from search_engine.config import ConfigError, TrainingConfig
from search_engine.expr.losses import make_loss
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, Node, parse
from search_engine.population.local_search import local_search_population, meta_chunk
from search_engine.population.networks import LayerChain, VmapModel, chain_layers, population_model
from search_engine.population.training import (
    fitness_population,
    population_loss,
    screen_population,
    stacked_copies,
    train_population,
)
from search_engine.scoring.batched import BatchedEvaluator, Plan
from search_engine.scoring.local_search import local_search
from search_engine.scoring.plan import make_evaluator
from search_engine.scoring.rejection import NO_PREDICTION, NON_FINITE
from search_engine.scoring.sequential import TRAINING_DIVERGED, SequentialEvaluator
from search_engine.study.driver import run_search
from search_engine.tasks.task import load_task
from search_engine.tasks.training import train

from ..conftest import nan_tree, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-6  # fitness is an error rate / MSE: equal up to float rounding


def _exploding() -> Node:
    """A loss whose gradients blow the weights up within a few steps."""
    return parse("mul(-1, square(square(square(add(add(f, f), add(f, f))))))")


# Well-conditioned losses and one that diverges at any learning rate. (A loss as steep as
# `_exploding` at a learning rate where it does not diverge amplifies float rounding by ~1e5,
# so its error rate may differ by a sample between the two paths.)
MIX = [CROSS_ENTROPY, SQUARED_ERROR, parse("mul(-1, mul(y, log(f)))"), nan_tree(), parse("sqrt(abs(sub(f, y)))")]


def _evaluators(**overrides):
    """Both evaluators at the configured rate (the fixed protocol) unless `training` says otherwise: the
    tuned protocol picks 1.58 for this 40-step logistic task, at the edge of stability, where the
    paths' rounding differences grow into different error rates (the module docstring's exception)."""
    overrides["training"] = {"lr_protocol": "fixed", **overrides.get("training", {})}
    config = tiny_config(**overrides)
    task = load_task(config)
    return SequentialEvaluator(task, config), BatchedEvaluator(task, config, Plan(25, 2, "test"))


def _assert_same(seq, bat):
    assert len(seq) == len(bat)
    for a, b in zip(seq, bat):
        assert a.reason == b.reason and a.weights == b.weights
        assert (a.fitness is None) == (b.fitness is None)
        if a.fitness is not None:
            assert b.fitness == pytest.approx(a.fitness, abs=TOL)


# ------------------------------------------------------------------ models


@pytest.mark.parametrize("name,dataset", [("logistic", "digits"), ("mlp", "digits"), ("lenet5", "digits28")])
def test_population_forward_equals_separate_models(name, dataset):
    task = load_task(tiny_config(task={"dataset": dataset, "model": name, "max_train": 300}))
    models = [task.new_model(s) for s in range(3)]
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n, _ in models[0].named_parameters()}
    x = task.splits.x_train[:64]
    want = torch.stack([m(x) for m in models])
    for model in (population_model(models[0]), LayerChain(chain_layers(models[0]), stage_bytes=1)):
        torch.testing.assert_close(model(params, {}, x), want, rtol=1e-5, atol=1e-6)


class _BatchNormNet(nn.Module):
    """A small conv + BatchNorm net: not a layer chain, so it runs under vmap."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.head = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_batchnorm_members_keep_their_own_statistics():
    task = load_task(tiny_config())
    torch.manual_seed(0)
    template = _BatchNormNet()
    assert isinstance(population_model(template), VmapModel)
    trees = [CROSS_ENTROPY, SQUARED_ERROR]
    cfg = TrainingConfig(steps=8, batch_size=32, lr=0.1, momentum=0.9)
    got = fitness_population(copy.deepcopy(template), population_loss(trees, "classification"), 2,
                             task.splits, "classification", cfg, seed=1)
    for tree, value in zip(trees, got):
        model = copy.deepcopy(template)
        assert train(model, make_loss(tree, "classification"), task.splits.x_train, task.splits.y_train, cfg, data_seed=1)
        model.eval()
        want = (model(task.splits.x_val).argmax(-1) != task.splits.y_val).float().mean().item()
        assert value == pytest.approx(want, abs=TOL)


# ------------------------------------------------------------------ fitness


@pytest.mark.parametrize("training", [
    {"lr": 0.05},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    {"lr": 0.02, "momentum": 0.5, "weight_decay": 0.001},
])
def test_fitness_equals_sequential_for_logistic_and_mlp(training):
    for model in ("logistic", "mlp"):
        seq, bat = _evaluators(task={"model": model}, training=training, rejection={"enabled": False})
        _assert_same([seq.fitness(t) for t in MIX], bat.fitness_many(MIX, [None] * len(MIX)))


def test_fitness_equals_sequential_for_lenet5_on_digits28():
    seq, bat = _evaluators(task={"dataset": "digits28", "model": "lenet5", "max_train": 200},
                           training={"steps": 6, "batch_size": 32, "lr": 0.05, "momentum": 0.9},
                           rejection={"enabled": False})
    trees = [CROSS_ENTROPY, SQUARED_ERROR, _exploding()]
    _assert_same([seq.fitness(t) for t in trees], bat.fitness_many(trees, [None] * 3))


def test_a_diverging_member_is_masked_and_does_not_touch_the_others():
    seq, bat = _evaluators(rejection={"enabled": False})
    alone = bat.fitness_many([CROSS_ENTROPY, SQUARED_ERROR], [None, None])
    mixed = bat.fitness_many([CROSS_ENTROPY, nan_tree(), SQUARED_ERROR], [None, None, None])
    assert mixed[1].fitness is None and mixed[1].reason == TRAINING_DIVERGED == seq.fitness(nan_tree()).reason
    assert [mixed[0], mixed[2]] == alone  # bit-for-bit: members never interact


def test_weights_that_blow_up_are_reported_like_sequential():
    seq, bat = _evaluators(task={"dataset": "diabetes", "model": "logistic", "max_train": None},
                           training={"lr": 0.05}, rejection={"enabled": False})
    trees = [parse("mul(-1, square(square(square(sub(f, y)))))"), SQUARED_ERROR]
    got = bat.fitness_many(trees, [None, None])
    _assert_same([seq.fitness(t) for t in trees], got)
    assert got[0].reason == TRAINING_DIVERGED and got[1].ok


def test_dead_members_stop_moving():
    task = load_task(tiny_config())
    template = task.new_model(0)
    params, buffers = stacked_copies(template, 2)
    loss = population_loss([CROSS_ENTROPY, nan_tree()], "classification")
    alive = train_population(population_model(template), params, buffers, loss, task.splits.x_train,
                             task.splits.y_train, TrainingConfig(steps=60, batch_size=32, lr=0.05))
    assert alive.tolist() == [True, False]
    for name, p in params.items():  # the NaN member's gradients were zeroed: it kept its initial weights
        torch.testing.assert_close(p[1], dict(template.named_parameters())[name], rtol=0, atol=0)


def test_weighted_fitness_equals_sequential():
    seq, bat = _evaluators(rejection={"enabled": False})
    trees = [CROSS_ENTROPY, parse("mul(-1, mul(y, log(f)))")]
    weights = [(1.0, 0.9, 1.1, 1.2, 0.8), (1.05, 1.0, 0.95, 1.0, 1.0)]
    _assert_same([seq.fitness(t, w) for t, w in zip(trees, weights)], bat.fitness_many(trees, weights))


# ------------------------------------------------------------------ rejection


def test_batched_screen_equals_sequential_screen():
    trees = MIX + [parse("mul(y, sign(f))"), parse("square(y)"), parse("sub(square(y), add(f, sub(y, f)))")]
    seq, bat = _evaluators()
    assert bat.screen_many(trees) == [seq.screen(t) for t in trees]
    assert bat.screen_many(trees)[-2:] == [NO_PREDICTION, NO_PREDICTION]


def test_batched_screen_reports_non_finite_members():
    seq, bat = _evaluators(task={"dataset": "diabetes", "model": "logistic", "max_train": None}, training={"lr": 1.0})
    power_256 = parse("f")
    for _ in range(8):
        power_256 = Node("square", (power_256,))
    trees = [SQUARED_ERROR, power_256, parse("abs(sub(f, y))")]
    got = bat.screen_many(trees)
    assert got == [seq.screen(t) for t in trees] and got[1] == NON_FINITE


def test_screen_population_with_only_unusable_trees():
    start = torch.zeros(4, 3)
    assert screen_population([parse("y")], "classification", torch.zeros(4, dtype=torch.long), start,
                             steps=2, lr=0.1) == [NO_PREDICTION]


# ------------------------------------------------------------------ local search


def test_batched_local_search_equals_per_candidate_local_search():
    config = tiny_config(local_search={"mode": "all", "meta_steps": 4, "batch_size": 32},
                         training={"momentum": 0.9, "nesterov": True})
    task = load_task(config)
    # No edge here has a meta-gradient that is exactly zero in exact arithmetic. (In cross-entropy,
    # log(w * f) = log w + log f: the weight on f gets a zero gradient, whose float rounding
    # (~1e-8, different in each path) Adam turns into steps of up to meta_lr.)
    trees = [SQUARED_ERROR, parse("sqrt(abs(sub(f, y)))"), parse("square(sub(f, y))")]
    got = local_search_population(task, trees, config.local_search, config.training, config.seed)
    for tree, result in zip(trees, got):
        want = local_search(task, tree, config.local_search, config.training, seed=config.seed)
        assert result.initial_weights == want.initial_weights
        torch.testing.assert_close(torch.tensor(result.weights), torch.tensor(want.weights), rtol=1e-5, atol=1e-6)
        assert result.meta_losses == pytest.approx(want.meta_losses, rel=1e-5)
        assert result.skipped_steps == want.skipped_steps


@pytest.mark.parametrize("overrides", [
    {"task": {"dataset": "digits28", "model": "lenet5", "max_train": 100},
     "local_search": {"mode": "all", "meta_steps": 2, "batch_size": 16},
     "training": {"momentum": 0.9, "weight_decay": 0.001}},
    # Two inner steps: the unrolled program (one inner step takes the shared-start meta-gradient).
    {"task": {"model": "mlp"}, "training": {"momentum": 0.5},
     "local_search": {"mode": "all", "meta_steps": 3, "batch_size": 32, "inner_steps": 2}},
], ids=["lenet5", "mlp-two-inner-steps"])
def test_batched_local_search_through_other_models_equals_per_candidate(overrides):
    config = tiny_config(**overrides)
    task = load_task(config)
    trees = [SQUARED_ERROR, parse("sqrt(abs(sub(f, y)))")]
    got = local_search_population(task, trees, config.local_search, config.training, config.seed)
    for tree, result in zip(trees, got):
        want = local_search(task, tree, config.local_search, config.training, seed=config.seed)
        torch.testing.assert_close(torch.tensor(result.weights), torch.tensor(want.weights), rtol=1e-5, atol=1e-6)
        assert result.meta_losses == pytest.approx(want.meta_losses, rel=1e-5)


def test_batched_local_search_skips_non_finite_members_only():
    config = tiny_config(task={"model": "mlp"}, local_search={"mode": "all", "meta_steps": 3, "batch_size": 32})
    task = load_task(config)
    trees = [nan_tree(), SQUARED_ERROR]
    got = local_search_population(task, trees, config.local_search, config.training, config.seed)
    want = [local_search(task, t, config.local_search, config.training, seed=config.seed) for t in trees]
    assert [g.skipped_steps for g in got] == [w.skipped_steps for w in want]
    assert got[0].skipped_steps == 3 and got[0].weights == got[0].initial_weights
    torch.testing.assert_close(torch.tensor(got[1].weights), torch.tensor(want[1].weights), rtol=1e-5, atol=1e-6)


def test_the_tuned_protocol_scores_alike_in_both_paths():
    """Each loss scaled to the baseline's gradient size and trained at the baseline's best rate gives
    the same fitness in both paths. (The rate chosen here, 1.0, is near the edge of stability: a loss
    scaled up there, such as squared error x 3.6, trains chaotically, the docstring's exception; the
    scales still agree.)"""
    seq, bat = _evaluators(training={"lr_protocol": "tuned", "lr": 0.01})
    assert seq.rate_record == bat.rate_record and seq.config.training.lr == seq.rate_record["lr"]
    stable = [CROSS_ENTROPY, parse("mul(-1, mul(y, log(f)))"), parse("mul(add(1, 1), mul(-1, mul(y, log(f))))"),
              nan_tree()]
    _assert_same([seq.fitness(t) for t in stable], bat.fitness_many(stable, [None] * len(stable)))
    scales = [seq.scale_of(make_loss(t, "classification")) for t in MIX]
    assert [o.scale for o in bat.fitness_many(MIX, [None] * len(MIX))] == pytest.approx(scales, rel=1e-12)


def test_evaluate_with_local_search_equals_sequential():
    seq, bat = _evaluators(local_search={"mode": "all", "meta_steps": 2, "batch_size": 32})
    trees = [SQUARED_ERROR, parse("square(y)"), parse("sqrt(abs(sub(f, y)))")]  # no zero-gradient edge
    got, want = bat.evaluate(trees), seq.evaluate(trees)
    assert [o.reason for o in got] == [o.reason for o in want]
    for a, b in zip(got, want):
        if a.ok:
            torch.testing.assert_close(torch.tensor(a.weights), torch.tensor(b.weights), rtol=1e-5, atol=1e-6)
            assert a.fitness == pytest.approx(b.fitness, abs=TOL)
    assert meta_chunk(bat.task, bat.config.local_search, 25) >= 1


# ------------------------------------------------------------------ strategy


def test_strategy_follows_the_config_override():
    task = load_task(tiny_config())
    assert type(make_evaluator(task, tiny_config(evaluation={"strategy": "sequential"}))) is SequentialEvaluator
    batched = make_evaluator(task, tiny_config(evaluation={"strategy": "batched", "max_population_chunk": 7}))
    assert isinstance(batched, BatchedEvaluator) and batched.chunk_size == 7
    auto = make_evaluator(task, tiny_config(evaluation={"strategy": "auto", "max_population_chunk": 8}))
    assert isinstance(auto, BatchedEvaluator) and auto.chunk_size == 8 and auto.plan.reason.startswith("rule:")
    measured = make_evaluator(task, tiny_config(evaluation={"strategy": "measure", "max_population_chunk": 8}))
    if isinstance(measured, BatchedEvaluator):
        assert 2 <= measured.chunk_size <= 8 and "measured" in measured.plan.reason
    for strategy in ("auto", "measure"):
        one = make_evaluator(task, tiny_config(evaluation={"strategy": strategy, "max_population_chunk": 1}))
        assert type(one) is SequentialEvaluator


@pytest.mark.parametrize("strategy", ["auto", "measure"])
def test_auto_and_measure_keep_vmapped_models_sequential_on_the_cpu(strategy):
    config = tiny_config(task={"dataset": "digits", "model": "wideresnet", "max_train": 100},
                         evaluation={"strategy": strategy})
    assert type(make_evaluator(load_task(config), config)) is SequentialEvaluator


def test_evaluation_config_is_validated():
    with pytest.raises(ConfigError) as err:
        tiny_config(evaluation={"strategy": "fast", "max_population_chunk": 0})
    assert set(err.value.errors) == {"evaluation.strategy", "evaluation.max_population_chunk"}


def test_batched_search_equals_sequential_search():
    def run(strategy):
        config = tiny_config(evaluation={"strategy": strategy}, training={"lr_protocol": "fixed"})  # see _evaluators
        result = run_search(config)
        return [(h.canonical_key, h.fitness) for h in result.hall_of_fame], result.totals

    (seq_hall, seq_totals), (bat_hall, bat_totals) = run("sequential"), run("batched")
    assert seq_totals == bat_totals and [k for k, _ in seq_hall] == [k for k, _ in bat_hall]
    assert [f for _, f in bat_hall] == pytest.approx([f for _, f in seq_hall], abs=TOL)


def test_plan_is_a_frozen_record():
    plan = Plan(8, 2, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.chunk = 3  # type: ignore[misc]


def test_chunks_that_run_out_of_gpu_memory_are_halved():
    from search_engine.scoring.batched import _in_chunks

    sizes = []

    def fn(part):
        sizes.append(len(part))
        if len(part) > 2:
            raise torch.cuda.OutOfMemoryError("too big")
        return [x * 10 for x in part]

    assert _in_chunks(fn, list(range(7)), 5) == [x * 10 for x in range(7)]
    assert sizes == [5, 2, 3, 1, 2, 2]


def test_break_even_population_is_interpolated_between_measured_sizes():
    from search_engine.scoring.plan import _break_even

    assert _break_even({2: 13.0, 8: 10.0, 25: 7.0}, 12.5, 8) == 4  # crosses 12.5 at P = 3
    assert _break_even({2: 1.0, 8: 0.5}, 1.2, 2) == 2  # already faster at the smallest size
