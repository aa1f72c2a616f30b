"""Picking each loss's learning rate on validation data."""

from __future__ import annotations

import math

import pytest

from search_engine.config import load_config
from search_engine.expr.losses import make_loss
from search_engine.expr.tree import CROSS_ENTROPY
from search_engine.scoring.tuned_lr import choose_rate, rate, rate_score, tune_rates, tuning_seeds
from search_engine.tasks.task import load_task
from tests.search_engine.conftest import tiny_config


def test_an_interior_minimum_is_found_without_extending_the_grid():
    asked = []

    def score(lr):
        asked.append(lr)
        return abs(math.log10(lr) + 1)  # best at 0.1

    best, tried = choose_rate(score)
    assert best == pytest.approx(0.1) and len(asked) == 5 and sorted(tried) == sorted(asked)


@pytest.mark.parametrize("optimum, expected", [(3.0, rate(1)), (0.3, rate(-1)), (100.0, rate(3)), (1e-5, rate(-7))])
def test_a_best_rate_on_an_edge_extends_the_grid_half_a_decade_at_a_time(optimum, expected):
    best, tried = choose_rate(lambda lr: abs(math.log10(lr) - math.log10(optimum)))
    assert best == pytest.approx(expected)
    assert min(tried) >= rate(-7) - 1e-12 and max(tried) <= rate(3) + 1e-9  # at most 3 extensions a side


def test_diverging_rates_are_never_chosen_and_all_diverging_gives_none():
    best, tried = choose_rate(lambda lr: None if lr > 0.05 else 1.0 - lr)
    assert best == pytest.approx(rate(-3)) and tried[rate(0)] is None
    assert choose_rate(lambda lr: None)[0] is None


def test_ties_go_to_the_smaller_rate():
    assert choose_rate(lambda lr: 0.5)[0] == pytest.approx(rate(-7))  # flat: extends down, keeps the smallest


def test_tuning_a_real_loss_is_reproducible():
    config = tiny_config()
    task = load_task(config)
    losses = {"baseline": make_loss(CROSS_ENTROPY, task.kind)}
    a, b = tune_rates(task, config, losses, steps=20), tune_rates(task, config, losses, steps=20)
    assert a == b and a["baseline"]["lr"] in {lr for lr, _ in a["baseline"]["tried"]}
    assert a["baseline"]["seeds"] == list(tuning_seeds(config)) and len(set(tuning_seeds(config))) == 2
    # every rate's score is the worse of its two runs
    assert all(dict(a["baseline"]["tried"])[lr] == rate_score(runs) for lr, runs in a["baseline"]["by_seed"])


#: A fake validation metric per (loss, seed): "steady" is 0.05 at 0.1, 0.04 at 0.316 and 0.03 at 1 on
#: both seeds; "edgy" is better still at 1 on the first seed but at the edge of stability there, bad on
#: the second; both diverge above 1.
GOOD_AT_1 = {"steady": (0.03, 0.03), "edgy": (0.01, 0.40)}


def _fake_metric(calls):
    def metric(task, loss_fn, config, lr, steps, seed):
        calls.append((loss_fn, round(lr, 6), seed))
        if lr > 1.01:
            return None
        if lr > 0.99:
            return GOOD_AT_1[loss_fn][seed - config.seed - 2000]
        return {0.316228: 0.04, 0.1: 0.05}.get(round(lr, 6), 0.2)
    return metric


def test_a_rate_good_on_one_tuning_seed_and_bad_on_the_other_is_not_chosen():
    config = tiny_config()
    calls = []
    tuned = tune_rates(None, config, {"edgy": "edgy", "steady": "steady"}, steps=7, metric=_fake_metric(calls))
    assert tuned["steady"]["lr"] == pytest.approx(1.0)
    assert tuned["edgy"]["lr"] == pytest.approx(rate(-1))  # one seed alone would have picked 1.0 (0.01)
    edgy = {round(lr, 6): runs for lr, runs in tuned["edgy"]["by_seed"]}
    assert edgy[1.0] == [0.01, 0.40] and dict(tuned["edgy"]["tried"])[1.0] == 0.40
    # every rate tried was trained on both tuning seeds, and only on them
    assert {seed for _, _, seed in calls} == set(tuning_seeds(config)) == {config.seed + 2000, config.seed + 2001}
    assert len(calls) == 2 * sum(len(t["tried"]) for t in tuned.values())


def test_a_rate_where_either_tuning_run_diverges_counts_as_diverged():
    assert rate_score([0.1, None]) is None and rate_score([None, 0.1]) is None
    assert rate_score([0.1, float("nan")]) is None and rate_score([]) is None
    assert rate_score([0.1, 0.3]) == 0.3

    def metric(task, loss_fn, config, lr, steps, seed):
        first = seed == tuning_seeds(config)[0]
        return 0.01 if lr > 0.99 and first else None if lr > 0.99 else abs(math.log10(lr) + 1)

    tuned = tune_rates(None, tiny_config(), {"baseline": "cross_entropy"}, steps=7, metric=metric)
    assert tuned["baseline"]["lr"] == pytest.approx(0.1) and dict(tuned["baseline"]["tried"])[1.0] is None


def test_the_work_estimate_knows_how_many_rates_tuning_tries_at_most():
    from search_engine import limits
    from search_engine.scoring import tuned_lr

    assert limits.TUNING_RATES_AT_MOST == len(tuned_lr.GRID_EXPONENTS) + 2 * tuned_lr.MAX_EXTENSIONS
    # every rate is trained on each tuning seed
    assert limits.TUNING_RUNS_AT_MOST == len(tuned_lr.tuning_seeds(tiny_config())) * limits.TUNING_RATES_AT_MOST
    plain, tuned = tiny_config(meta_test={"tune_lr": False}), tiny_config()  # tuning is on by default
    assert tuned.meta_test.tune_lr and load_config({}, check_data=False).meta_test.tune_lr
    extra = limits.work_estimate(tuned)["meta_test_steps"] - limits.work_estimate(plain)["meta_test_steps"]
    final_choice = (limits.FINALISTS + 1) * limits.TUNING_RUNS_AT_MOST  # only with tuned rates
    # the meta-test reuses the final choice's tuning of the chosen loss and the baseline
    assert extra == (2 * plain.meta_test.seeds + final_choice) * plain.meta_test.steps
    ml3, ml3_plain = tiny_config(method="ml3"), tiny_config(method="ml3", meta_test={"tune_lr": False})
    extra = limits.work_estimate(ml3)["meta_test_steps"] - limits.work_estimate(ml3_plain)["meta_test_steps"]
    assert extra == 2 * (limits.TUNING_RUNS_AT_MOST + plain.meta_test.seeds) * plain.meta_test.steps  # no final choice


def test_meta_testing_reports_the_figures_at_tuned_rates_by_default():
    from search_engine.scoring.metatest import evaluate_learned_loss

    config = tiny_config(meta_test={"steps": 20, "seeds": 2})
    task = load_task(config)
    record = evaluate_learned_loss(task, config, "mul(-1, mul(y, log(f)))", None, "cross_entropy")
    assert record["rescales_baseline"] == pytest.approx(1.0)  # cross-entropy itself: named as such
    tuned = record["tuned_lr"]
    assert record["learned_mean"] is not None and tuned["learned_mean"] is not None
    assert tuned["learned_lr"] in {lr for lr, _ in tuned["tried"]["learned"]}
    # the same loss as the baseline: the same rate is picked for both, and the test errors agree
    assert tuned["learned_lr"] == tuned["baseline_lr"] and tuned["learned"] == tuned["baseline"]


def test_a_configuration_can_still_meta_test_by_the_papers_protocol_alone():
    from search_engine.scoring.metatest import evaluate_learned_loss

    config = tiny_config(meta_test={"steps": 10, "seeds": 2, "tune_lr": False})
    record = evaluate_learned_loss(load_task(config), config, "square(sub(y, f))", None, "cross_entropy")
    assert "tuned_lr" not in record and len(record["learned"]) == 2


def test_the_record_names_a_loss_that_only_rescales_the_baseline():
    from search_engine.scoring.metatest import baseline_rescale

    task = load_task(tiny_config())
    twice = "add(mul(-1, mul(y, log(f))), mul(-1, mul(y, log(f))))"
    assert baseline_rescale(task, twice, None, None) == pytest.approx(2.0)
    assert baseline_rescale(task, "square(sub(y, f))", None, None) is None  # another shape


def test_a_rate_is_picked_on_the_meta_tests_own_schedule():
    from search_engine.scoring.tuned_lr import validation_metric

    plain = tiny_config()
    scheduled = tiny_config(meta_test={"lr_milestones": [2], "lr_gamma": 0.001})  # nearly stops after 2 steps
    task, loss = load_task(plain), make_loss(CROSS_ENTROPY, "classification")
    assert validation_metric(task, loss, plain, 0.316, 30) != validation_metric(task, loss, scheduled, 0.316, 30)


def test_a_run_at_the_search_rate_is_not_trained_again_at_the_same_tuned_rate(monkeypatch):
    from search_engine.scoring import metatest, protocol

    # The fixed protocol at rate 1, a grid rate: cross-entropy as the learned loss and as the baseline is
    # tuned to 1 on this task, so the seeds at the tuned rates are the search-rate phase's runs.
    config = tiny_config(training={"lr": 1.0, "lr_protocol": "fixed"}, meta_test={"steps": 20, "seeds": 2})
    task = load_task(config)
    trained = []
    real = metatest.held_out_metric

    def counted(task, loss_fn, config, seed, steps):
        trained.append((config.training.lr, seed))
        return real(task, loss_fn, config, seed, steps)

    monkeypatch.setattr(metatest, "held_out_metric", counted)
    record = metatest.evaluate_learned_loss(task, config, "mul(-1, mul(y, log(f)))", None, "cross_entropy")
    tuned = record["tuned_lr"]
    assert tuned["learned_lr"] == tuned["baseline_lr"] == record["search_lr"] == 1.0
    assert len(trained) == 2 * 2  # seeds x (learned, baseline), once
    assert (tuned["learned"], tuned["baseline"]) == (record["learned"], record["baseline"])
    # A run taken from the first phase is the run training would give.
    seed = record["seeds"][0]
    again = real(task, make_loss(CROSS_ENTROPY, task.kind), protocol.tuned_config(config, tuned["baseline_lr"]),
                 seed, 20)
    assert again == tuned["baseline"][0]
