"""The "auto" plan is a rule, not a timing: busy and quiet machines give the same search."""

from __future__ import annotations

import itertools

import pytest

import search_engine.scoring.plan as plan_module
from search_engine.scoring.batched import BatchedEvaluator
from search_engine.scoring.plan import default_plan, make_evaluator, measure_plan
from search_engine.study.driver import run_search
from search_engine.tasks.task import load_task
from tests.search_engine.conftest import tiny_config


class WildClock:
    """perf_counter stand-in whose intervals follow `pattern` (seconds), over and over."""

    def __init__(self, pattern):
        self.now, self.steps = 0.0, itertools.cycle(pattern)

    def __call__(self) -> float:
        self.now += next(self.steps)
        return self.now


def _history(result):
    return [{k: v for k, v in g.to_dict().items() if k != "seconds"} for g in result.history]


def test_auto_gives_one_history_whatever_the_clock_says(monkeypatch):
    config = tiny_config(evaluation={"strategy": "auto", "max_population_chunk": 4})
    runs = []
    for pattern in ([1e-4], [5.0, 1e-6, 0.3], [1e-6, 9.0]):  # quiet, busy and erratic machines
        monkeypatch.setattr(plan_module.time, "perf_counter", WildClock(pattern))
        result = run_search(config)
        runs.append((_history(result), result.best, result.plan))
    assert runs[0] == runs[1] == runs[2]
    assert runs[0][2]["strategy"] == "batched" and runs[0][2]["chunk"] == 4


def test_measure_follows_the_timings_so_the_test_above_could_fail(monkeypatch):
    task = load_task(tiny_config())
    config = tiny_config(evaluation={"strategy": "measure", "max_population_chunk": 8})
    plans = []
    for sequential, per_step in ((1e-6, 1.0), (1.0, 1e-6)):  # sequential wins; the population wins
        monkeypatch.setattr(plan_module, "_sequential_step_seconds", lambda *_a, s=sequential: s)
        monkeypatch.setattr(plan_module, "_population_step_seconds", lambda *_a, t=per_step: t)
        found = measure_plan(task, config)
        plans.append(None if found is None else found.chunk)
    assert plans == [None, 8]


@pytest.mark.parametrize("model, batched", [("mlp", True), ("logistic", True), ("wideresnet", False)])
def test_the_rule_depends_on_the_model_family_and_device_only(model, batched):
    config = tiny_config(task={"dataset": "digits", "model": model, "max_train": 100},
                         evaluation={"strategy": "auto", "max_population_chunk": 25})
    plan = default_plan(load_task(config), config)
    assert (plan is not None) == batched
    if batched:
        assert (plan.chunk, plan.min_batch) == (25, 2) and "cpu" in plan.reason
        assert isinstance(make_evaluator(load_task(config), config), BatchedEvaluator)
