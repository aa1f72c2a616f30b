"""Picking each loss's learning rate on validation data."""

from __future__ import annotations

import math

import pytest

from search_engine.expr.losses import make_loss
from search_engine.expr.tree import CROSS_ENTROPY
from search_engine.scoring.tuned_lr import choose_rate, rate, tune_rates
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
