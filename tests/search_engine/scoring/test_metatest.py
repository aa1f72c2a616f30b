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
