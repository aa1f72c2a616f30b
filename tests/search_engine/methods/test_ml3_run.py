"""ML3 runs: the events and the hall of fame, seeded reproducibility, checkpoint / resume, stopping."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from search_engine.config import load_config
from search_engine.evolution.checkpoint import CheckpointError
from search_engine.evolution.events import (
    CandidateEvaluated,
    GenerationFinished,
    SearchFinished,
    SearchStarted,
)
from search_engine.expr.network import NetworkLoss, make_network_loss
from search_engine.expr.tree import KNOWN_LOSSES
from search_engine.methods.ml3 import ML3, report_count
from search_engine.methods.ml3_runner import fitness_of
from search_engine.scoring.sequential import SequentialEvaluator
from search_engine.study.driver import run_search
from search_engine.study.method import method_named as strategy
from search_engine.tasks.task import load_task

from ..conftest import StopAfter, tiny_config, without_seconds

META_STEPS, REPORT_EVERY = 6, 2  # three reports


def ml3_config(**overrides):
    sections = {"task": {"max_train": 200}, "training": {"steps": 20},
                "ml3": {"meta_steps": META_STEPS, "report_every": REPORT_EVERY, "hidden_units": 8,
                        "batch_size": 32, "meta_lr": 0.01}}
    for name, values in overrides.items():
        sections[name] = {**sections.get(name, {}), **values} if isinstance(values, dict) else values
    return tiny_config(method="ml3", **sections)



def run(config, path=None, should_stop=None, **kwargs):
    events = []
    result = run_search(config, events.append, should_stop, checkpoint_path=path, **kwargs)
    return result, events


class StopAfterReports:
    """should_stop that answers True once `n` reports (GenerationFinished events) have been seen."""

    def __init__(self, n: int):
        self.n, self.events = n, []

    def __call__(self) -> bool:
        return sum(isinstance(e, GenerationFinished) for e in self.events) >= self.n


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("ml3")
    result, events = run(ml3_config(), folder / "checkpoint.json")
    return result, events, folder / "checkpoint.json"


def test_the_registry_runs_ml3_through_its_strategy():
    assert strategy("ml3") is ML3
    assert report_count(ml3_config()) == 3 and report_count(ml3_config(ml3={"meta_steps": 7})) == 4


def test_events_come_in_run_search_order_with_one_report_per_block(uninterrupted):
    result, events, _ = uninterrupted
    kinds = [type(e) for e in events]
    assert kinds == [SearchStarted] + [CandidateEvaluated, GenerationFinished] * 3 + [SearchFinished]
    started, finished = events[0], events[-1]
    assert (started.generations, started.population_size, started.start_generation) == (3, 1, 0)
    assert started.baseline_loss == "cross_entropy" and started.plan["strategy"] == "sequential"
    reports = [e for e in events if isinstance(e, GenerationFinished)]
    assert [g.generation for g in reports] == [0, 1, 2]
    for g in reports:
        assert g.best_fitness == g.mean_fitness == g.median_fitness and 0 <= g.best_fitness <= 1
        assert (g.evaluated, g.rejected, g.cache_hits) == (1, 0, 0)
    assert (finished.status, finished.generations_completed, finished.evaluated) == ("completed", 3, 3)
    assert result.status == "completed" and len(result.history) == 3


def test_the_networks_change_between_reports_and_the_best_is_kept(uninterrupted):
    result, events, _ = uninterrupted
    candidates = [e for e in events if isinstance(e, CandidateEvaluated)]
    assert len({c.expression for c in candidates}) == 3  # every block moved the weights
    best = min((c for c in candidates), key=lambda c: (c.fitness, c.generation))
    assert len(result.hall_of_fame) == 1 and result.best.expression == best.expression
    assert result.best.fitness == best.fitness == min(g.best_fitness for g in result.history)


def test_the_stored_network_is_the_network_that_was_scored(uninterrupted):
    result, _, _ = uninterrupted
    net = NetworkLoss.from_dict(result.best.network)
    assert net.widths == (2, 8, 8, 1) and result.best.size == net.n_weights == 2 * 8 + 8 * 8 + 8
    assert result.best.expression == result.best.canonical_key == net.expression
    assert result.best.latex == net.latex() and result.best.weights is None
    config = ml3_config()
    task = load_task(config)
    assert fitness_of(task, config, make_network_loss(net, task.kind)) == result.best.fitness


def test_the_baseline_is_the_evolutionary_searchs_baseline(uninterrupted):
    result, _, _ = uninterrupted
    config = ml3_config()
    # ML3 scores its snapshots at training.lr, as the fixed protocol scores candidates.
    fixed = dataclasses.replace(config, training=dataclasses.replace(config.training, lr_protocol="fixed"))
    evaluator = SequentialEvaluator(load_task(fixed), fixed)
    assert result.baseline_fitness == evaluator.fitness(KNOWN_LOSSES["cross_entropy"]).fitness


def test_a_seeded_run_is_reproducible_bit_for_bit(uninterrupted, one_thread):
    result, events, _ = uninterrupted
    again, again_events = run(ml3_config())
    assert without_seconds(again.to_dict()) == without_seconds(result.to_dict())
    assert [without_seconds(e.to_dict()) for e in again_events] == [without_seconds(e.to_dict()) for e in events]
    other, _ = run(ml3_config(seed=4))
    assert other.best.network != result.best.network


def test_the_checkpoint_is_json_with_the_optimizer_state(uninterrupted):
    _, _, path = uninterrupted
    data = json.loads(path.read_text())
    assert data["format"] == "lfl-ml3-checkpoint" and data["next_report"] == 3
    assert len(data["weights"]) == 88 and data["adam"]["step"] == META_STEPS
    assert len(data["adam"]["exp_avg"]) == len(data["adam"]["exp_avg_sq"]) == 88


def test_resume_gives_the_history_of_an_uninterrupted_run(uninterrupted, tmp_path, one_thread):
    result, events, _ = uninterrupted
    path = tmp_path / "checkpoint.json"
    stop = StopAfterReports(1)
    first = run_search(ml3_config(), stop.events.append, stop, checkpoint_path=path)
    assert first.status == "stopped" and len(first.history) == 1
    resumed, resumed_events = run(ml3_config(), path, resume=True)
    assert resumed.status == "completed"
    assert without_seconds(resumed.to_dict()) == without_seconds(result.to_dict())
    assert resumed_events[0].start_generation == 1
    tail = [e for e in events if not isinstance(e, SearchStarted)][2:]  # after report 0's two events
    assert [without_seconds(e.to_dict()) for e in resumed_events[1:]] == [without_seconds(e.to_dict()) for e in tail]


class CountQuestions:
    """should_stop that never stops; remembers how many questions had been asked at each report."""

    def __init__(self):
        self.asked, self.at_report = 0, []

    def __call__(self) -> bool:
        self.asked += 1
        return False

    def on_event(self, event) -> None:
        if isinstance(event, GenerationFinished):
            self.at_report.append(self.asked)


def test_a_stop_inside_a_block_drops_it_and_keeps_the_reports_that_finished(uninterrupted, one_thread):
    result, _, _ = uninterrupted
    counter = CountQuestions()
    run_search(ml3_config(), counter.on_event, counter)
    # After report 0: question +1 is asked before block 1, +2 by the training of block 1's fitness.
    stopped, events = run(ml3_config(), should_stop=StopAfter(counter.at_report[0] + 2))
    assert stopped.status == "stopped" and isinstance(events[-1], SearchFinished)
    assert events[-1].status == "stopped" and len(stopped.history) == 1
    assert [type(e) for e in events].count(CandidateEvaluated) == 1  # block 1 left no half-reported event
    assert without_seconds(stopped.history[0].to_dict()) == without_seconds(result.history[0].to_dict())
    assert stopped.best == result.history[0].hall_of_fame[0]


def test_a_stop_while_preparing_finds_nothing(one_thread):
    stopped, events = run(ml3_config(), should_stop=StopAfter(1))
    assert stopped.status == "stopped" and stopped.history == () and stopped.best is None
    assert [type(e) for e in events] == [SearchFinished]


def test_resume_refuses_another_configuration_or_another_methods_checkpoint(uninterrupted, tmp_path):
    _, _, path = uninterrupted
    with pytest.raises(CheckpointError, match="ml3.meta_lr"):
        run(ml3_config(ml3={"meta_lr": 0.02}), path, resume=True)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"format": "lfl-search-checkpoint", "version": 1}))
    with pytest.raises(CheckpointError, match="not an lfl ML3 checkpoint"):
        run(ml3_config(), foreign, resume=True)


def test_a_finished_run_resumed_changes_nothing(uninterrupted, tmp_path, one_thread):
    result, _, path = uninterrupted
    copy = tmp_path / "checkpoint.json"
    copy.write_text(path.read_text())
    again, events = run(ml3_config(), copy, resume=True)
    assert [type(e) for e in events] == [SearchStarted, SearchFinished]
    assert without_seconds(again.to_dict()) == without_seconds(result.to_dict())


def test_a_diverging_network_is_rejected_and_the_run_goes_on(monkeypatch, one_thread):
    from search_engine.methods import ml3_runner as ml3

    scored = []

    def diverges_in_report_1(task, config, loss_fn):
        scored.append(loss_fn)
        return None if len(scored) == 3 else 0.5 - len(scored) / 100  # baseline, report 0, report 1, ...

    monkeypatch.setattr(ml3, "fitness_of", diverges_in_report_1)
    result, events = run(ml3_config())
    candidates = [e for e in events if isinstance(e, CandidateEvaluated)]
    assert [c.rejection_reason is None for c in candidates] == [True, False, True]
    assert candidates[1].fitness is None and result.history[1].best_expression is None
    assert result.status == "completed" and result.totals == {"evaluated": 3, "rejected": 1, "cache_hits": 0}
    assert result.best.generation == 2 and result.history[1].hall_of_fame == result.history[0].hall_of_fame


def test_a_meta_step_with_a_non_finite_meta_loss_makes_no_update(monkeypatch, one_thread):
    from search_engine.methods import ml3_runner as ml3

    monkeypatch.setattr(ml3, "meta_loss", lambda task, weights, config, step: weights.sum() * float("nan"))
    result, _ = run(ml3_config())
    first = ml3.initial_weights(ml3.widths_of(ml3_config()), ml3_config().seed)
    assert result.status == "completed"
    assert NetworkLoss.from_dict(result.best.network).flat() == tuple(first.tolist())  # never moved


def test_the_preset_is_an_ml3_configuration():
    config = load_config(Path(__file__).resolve().parents[3] / "configs" / "ml3_digits.json", check_data=False)
    assert config.method == "ml3" and report_count(config) == 5
