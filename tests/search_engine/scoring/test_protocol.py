"""The tuned fitness protocol: no candidate wins by being a rescaled baseline or by a learning rate."""

import json

import pytest
import torch

from search_engine.config import load_config
from search_engine.expr.losses import make_loss
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, parse
from search_engine.expr.weighted import make_weighted_loss
from search_engine.scoring import protocol
from search_engine.scoring.batched import BatchedEvaluator, Plan
from search_engine.scoring.local_search import local_search, normalized
from search_engine.scoring.sequential import SequentialEvaluator
from search_engine.stored_config import adopt_stored, as_stored
from search_engine.tasks.task import load_task

from ..conftest import tiny_config

RESCALED_CE = parse("mul(add(1, 1), mul(-1, mul(y, log(f))))")  # 2 x cross-entropy
HALVED_CE = parse("div(mul(-1, mul(y, log(f))), 1)")  # a / sqrt(1 + 1): cross-entropy / sqrt(2)


def _tuned(**overrides):
    training = {"lr_protocol": "tuned", **overrides.pop("training", {})}
    return tiny_config(training=training, **overrides)


def test_the_tuned_protocol_is_the_default_and_fixed_is_the_papers():
    assert load_config({}, check_data=False).training.lr_protocol == "tuned"
    with pytest.raises(ValueError, match="training.lr_protocol: must be one of tuned, fixed"):
        load_config({"training": {"lr_protocol": "sometimes"}}, check_data=False)


def test_a_loss_scaled_by_a_constant_gets_the_same_scale_times_it():
    config = _tuned()
    task = load_task(config)
    probe = protocol.GradientProbe.for_task(task, config)
    ce = probe.scale(make_loss(CROSS_ENTROPY, task.kind))
    assert ce == pytest.approx(1.0, rel=1e-6)
    assert probe.scale(make_loss(RESCALED_CE, task.kind)) == pytest.approx(0.5, rel=1e-5)
    assert probe.scale(make_loss(HALVED_CE, task.kind)) == pytest.approx(2 ** 0.5, rel=1e-5)


@pytest.mark.parametrize("strategy", ["sequential", "batched"])
def test_a_rescaled_baseline_gets_no_better_fitness_than_the_baseline(strategy):
    config = _tuned(evaluation={"strategy": strategy})
    task = load_task(config)
    ev = SequentialEvaluator(task, config) if strategy == "sequential" else BatchedEvaluator(task, config, Plan(25, 2, "t"))
    base = ev.fitness(CROSS_ENTROPY).fitness
    outcomes = ev.evaluate([RESCALED_CE, HALVED_CE, CROSS_ENTROPY])
    assert [o.fitness for o in outcomes] == pytest.approx([base, base, base], abs=1e-9)
    assert outcomes[0].scale == pytest.approx(0.5, rel=1e-5)


def test_under_the_fixed_protocol_a_rescaled_baseline_can_win_by_its_rate():
    """Why the protocol exists: at a too-small fixed rate, doubling the loss is a better rate."""
    config = tiny_config(training={"lr_protocol": "fixed", "lr": 0.01})
    ev = SequentialEvaluator(load_task(config), config)
    assert ev.config.training.lr == 0.01 and ev.probe is None
    assert ev.fitness(RESCALED_CE).fitness < ev.fitness(CROSS_ENTROPY).fitness


def test_the_search_rate_is_the_baselines_best_and_recorded():
    config = _tuned(training={"lr": 0.01})
    ev = SequentialEvaluator(load_task(config), config)
    record = ev.rate_record
    tried = dict((round(r, 12), v) for r, v in record["tried"])
    assert record["protocol"] == "tuned" and record["configured_lr"] == 0.01
    assert ev.config.training.lr == record["lr"]
    best = min(v for v in tried.values() if v is not None)
    assert tried[round(record["lr"], 12)] == best
    assert ev.fitness(CROSS_ENTROPY).fitness == pytest.approx(best)
    # The configured rate's neighbours were tried; 0.01 is too small for 40 steps, so the grid grew upwards.
    assert {0.01, round(0.01 * 10 ** 0.5, 12)} <= set(tried)
    assert record["lr"] > 0.01


def test_the_choice_of_rate_is_a_function_of_the_scores():
    scores = {0.1 * 10 ** (k / 2): v for k, v in zip(range(-1, 5), [0.5, 0.4, 0.3, 0.2, 0.25, 0.3])}

    def score(lr):
        return next(v for r, v in scores.items() if abs(r - lr) < 1e-12)

    lr, record = protocol.search_rate(None, tiny_config(training={"lr": 0.1, "lr_protocol": "tuned"}), score)
    assert lr == pytest.approx(0.1 * 10 ** 1.0)
    assert [round(v, 3) for _, v in record["tried"]] == [0.5, 0.4, 0.3, 0.2, 0.25]
    assert protocol.search_rate(None, tiny_config(training={"lr_protocol": "fixed"}), score)[0] == 0.05


def test_local_search_cannot_move_the_overall_scale():
    """The normalized loss's meta-gradient is orthogonal to scaling every weight of a linear root."""
    config = _tuned(local_search={"mode": "all", "meta_steps": 3})
    task = load_task(config)
    probe = protocol.GradientProbe.for_task(task, config)
    tree = parse("mul(-1, mul(y, log(f)))")  # cross-entropy: (w0 * -1) * w1 * (w2 y * w3 log(w4 f))
    loss = normalized(make_weighted_loss(tree, task.kind), probe)
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    targets = torch.arange(16) % 10
    w = torch.ones(5, requires_grad=True)
    for factor in (0.5, 3.0):
        scaled_w = torch.tensor([factor, 1.0, 1.0, 1.0, 1.0])
        assert float(loss(scaled_w, logits, targets)) == pytest.approx(float(loss(w, logits, targets)), rel=1e-5)
    (grad,) = torch.autograd.grad(loss(w, logits, targets), [w])
    assert abs(float(grad[0])) < 1e-6  # w0 scales the whole loss: no gradient along it
    result = local_search(task, tree, config.local_search, config.training, seed=config.seed, probe=probe)
    # A zero meta-gradient in exact arithmetic is a rounding-sized one in floats, which Adam's
    # normalization can turn into a step of up to meta_lr (population.local_search's docstring).
    drift = config.local_search.meta_steps * config.local_search.meta_lr
    assert result.weights[0] == pytest.approx(result.initial_weights[0], abs=drift)


def test_batched_and_sequential_local_search_agree_under_the_protocol():
    from search_engine.population.local_search import local_search_population

    config = _tuned(local_search={"mode": "all", "meta_steps": 3})
    task = load_task(config)
    probe = protocol.GradientProbe.for_task(task, config)
    trees = [parse("square(sub(f, y))"), parse("mul(-1, mul(y, log(f)))")]
    batched = local_search_population(task, trees, config.local_search, config.training, config.seed, probe=probe)
    drift = config.local_search.meta_steps * config.local_search.meta_lr  # see the test above
    for tree, found in zip(trees, batched):
        single = local_search(task, tree, config.local_search, config.training, seed=config.seed, probe=probe)
        assert found.weights == pytest.approx(single.weights, abs=drift)
        assert found.meta_losses == pytest.approx(single.meta_losses, rel=1e-4)


def test_regression_is_scaled_to_squared_error():
    config = tiny_config(task={"dataset": "diabetes", "model": "mlp", "max_train": None},
                         training={"lr_protocol": "tuned"})
    task = load_task(config)
    probe = protocol.GradientProbe.for_task(task, config)
    assert probe.scale(make_loss(SQUARED_ERROR, task.kind)) == pytest.approx(1.0, rel=1e-6)
    doubled = parse("add(square(sub(f, y)), square(sub(f, y)))")
    assert probe.scale(make_loss(doubled, task.kind)) == pytest.approx(0.5, rel=1e-5)


def test_a_loss_flat_at_the_probe_keeps_scale_one():
    config = _tuned()
    task = load_task(config)
    probe = protocol.GradientProbe.for_task(task, config)
    assert probe.scale(make_loss(parse("mul(y, y)"), task.kind)) == 1.0  # no f: no gradient


def test_a_configuration_stored_before_the_protocol_resumes_with_the_fixed_one():
    stored = json.loads(json.dumps(tiny_config().to_dict()))
    del stored["training"]["lr_protocol"]
    assert load_config(as_stored(stored), check_data=False).training.lr_protocol == "fixed"
    assert adopt_stored(tiny_config(), stored).training.lr_protocol == "fixed"
    assert adopt_stored(tiny_config(), tiny_config().to_dict()).training.lr_protocol == "tuned"


def test_a_checkpoint_from_before_the_protocol_resumes(tmp_path):
    from search_engine.study.driver import run_search

    config = tiny_config(training={"lr_protocol": "fixed"}, search={"generations": 2})
    path = tmp_path / "checkpoint.json"
    first = run_search(config.to_dict() | {"search": {**config.to_dict()["search"], "generations": 1}},
                       checkpoint_path=path)
    assert len(first.history) == 1
    data = json.loads(path.read_text())
    del data["config"]["training"]["lr_protocol"]  # as a checkpoint written before the field existed
    path.write_text(json.dumps(data))
    current = config.to_dict()
    del current["training"]["lr_protocol"]  # the same file the user ran, which never named it
    resumed = run_search(load_config(current), checkpoint_path=path, resume=True)
    assert resumed.status == "completed" and len(resumed.history) == 2
    assert resumed.config["training"]["lr_protocol"] == "fixed"
    whole = run_search(config)
    assert [g.best_fitness for g in resumed.history] == [g.best_fitness for g in whole.history]


def test_the_work_estimate_counts_the_search_rates_tried_at_most():
    from search_engine import limits
    from search_engine.scoring import tuned_lr

    assert limits.SEARCH_RATES_AT_MOST == 3 + 2 * tuned_lr.MAX_EXTENSIONS
    fixed, tuned = tiny_config(training={"lr_protocol": "fixed"}), _tuned()
    extra = limits.work_estimate(tuned)["fitness_steps"] - limits.work_estimate(fixed)["fitness_steps"]
    assert extra == limits.SEARCH_RATES_AT_MOST * tuned.training.steps


def test_an_evaluator_reuses_the_rate_chosen_before_for_the_search():
    from search_engine.scoring.plan import make_evaluator, plan_record

    config = _tuned(training={"lr": 0.01})
    task = load_task(config)
    first = make_evaluator(task, config)
    record = plan_record(first, task.device)
    assert record["search_rate"] == first.rate_record
    again = make_evaluator(task, config, saved_plan=record)
    assert again.rate_record == first.rate_record and again.config.training.lr == first.config.training.lr
    # A record chosen for another configured rate is not reused: the rate is chosen again.
    other = _tuned(training={"lr": 0.1})
    assert make_evaluator(task, other, saved_plan=record).rate_record["configured_lr"] == 0.1
