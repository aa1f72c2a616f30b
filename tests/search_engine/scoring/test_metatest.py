import pytest
from scipy import stats

from search_engine.expr.losses import make_loss
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR
from search_engine.scoring.metatest import compare, meta_seeds, meta_test
from search_engine.tasks.task import load_task

from ..conftest import tiny_config


def test_compare_statistics_match_scipy():
    learned, baseline = [0.10, 0.12, 0.11, 0.09], [0.13, 0.12, 0.15, 0.10]
    c = compare(learned, baseline, seeds=(1, 2, 3, 4), metric="error rate")
    assert c.learned_mean == pytest.approx(0.105) and c.baseline_mean == pytest.approx(0.125)
    assert c.wins == 3  # the tie on seed 2 is not a win
    ref = stats.ttest_rel(learned, baseline)
    assert c.t_statistic == pytest.approx(ref.statistic) and c.p_value == pytest.approx(ref.pvalue)
    assert "learned 0.1050" in c.summary()


def test_compare_with_diverged_runs_and_identical_results():
    c = compare([None, 0.2], [0.3, 0.3], seeds=(1, 2), metric="error rate")
    assert c.learned_mean is None and c.wins == 1 and c.p_value is None  # a diverged run never wins
    assert compare([0.2, 0.2], [None, 0.3], seeds=(1, 2), metric="error rate").wins == 2
    same = compare([0.2, 0.3], [0.2, 0.3], seeds=(1, 2), metric="error rate")
    assert same.wins == 0 and same.p_value is None


def test_meta_test_is_paired_and_uses_the_test_split():
    config = tiny_config()
    task = load_task(config)
    seeds = meta_seeds(config, 2)
    assert config.seed not in seeds
    ce = make_loss(CROSS_ENTROPY, "classification")
    c = meta_test(task, config, ce, ce, seeds=seeds, steps=30)
    assert c.learned == c.baseline and all(0 <= v < 0.9 for v in c.learned)
    other = meta_test(task, config, make_loss(SQUARED_ERROR, "classification"), ce, seeds=seeds, steps=30)
    assert other.baseline == c.baseline and other.learned != c.learned


def test_at_tuned_rates_each_rate_is_picked_on_both_tuning_seeds_the_baseline_alike(monkeypatch):
    from types import SimpleNamespace

    from search_engine.scoring import metatest, tuned_lr

    # Both losses train best of all at rate 1 on the first tuning seed and badly on the second: both
    # get 0.316, the best rate on both seeds, and the meta-test trains each at that rate.
    at_1 = {"learned": (0.01, 0.5), "baseline": (0.02, 0.6)}

    def metric(task, loss_fn, config, lr, steps, seed):
        if lr > 1.01:
            return None
        return at_1[loss_fn][seed - config.seed - 2000] if lr > 0.99 else 0.04 if abs(lr - 0.316) < 0.01 else 0.3

    trained_at = {}

    def run(task, config, losses, *, seeds, steps, rates, on_seed=None, done=None):
        trained_at.update(rates)
        return {name: [0.1] * len(seeds) for name in losses}

    monkeypatch.setattr(tuned_lr, "validation_metric", metric)
    monkeypatch.setattr(metatest, "run_meta_test", run)
    config = tiny_config()
    losses = {"learned": "learned", "baseline": "baseline"}
    record = metatest._at_tuned_rates(SimpleNamespace(metric_name="error rate"), config, losses, (1, 2), steps=7)
    assert record["learned_lr"] == record["baseline_lr"] == trained_at["learned"] == trained_at["baseline"]
    assert abs(record["learned_lr"] - 0.316) < 0.001
    assert [runs for lr, runs in record["by_seed"]["learned"] if lr == 1.0] == [[0.01, 0.5]]
    assert dict(record["tried"]["baseline"])[1.0] == 0.6  # the worse of the two
    seeds = record["tuning_seeds"]
    assert len(seeds) == 2 and not set(seeds) & set(meta_seeds(config, 1000)) and config.seed not in seeds
