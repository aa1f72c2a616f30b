"""One loss, one entry: the search's cache and hall of fame know the task (search_engine.evolution.steps
with expr.symbolic's task-aware keys and expr.gradient_probe's signatures), and checkpoints written
before they did still resume."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from search_engine.config import ExperimentConfig, load_config
from search_engine.evolution import steps
from search_engine.evolution.checkpoint import SearchState, load, state_from_dict, state_to_dict
from search_engine.evolution.events import CandidateEvaluated, GenerationFinished
from search_engine.expr.gradient_probe import gradient_signature
from search_engine.expr.symbolic import canonical_key
from search_engine.expr.tree import parse
from search_engine.scoring.sequential import Outcome
from search_engine.study.driver import run_search

from ..conftest import tiny_config
from .test_steps import KeyedEvaluator, fake_config

pytestmark = pytest.mark.usefixtures("one_thread")

CE = "mul(-1, mul(y, log(f)))"
OLD = Path(__file__).parent / "checkpoints_before_task_keys"


def hand_state(expressions, dataset="digits", protocol="fixed", **fields) -> SearchState:
    config = tiny_config(task={"dataset": dataset}, local_search={"mode": "off"}, training={"lr_protocol": protocol})
    return SearchState(config=config.to_dict(), next_generation=0, population=[parse(e) for e in expressions],
                       rng=random.Random(0), **fields)


def test_a_generation_evaluates_each_loss_once_by_form_and_by_gradient():
    state = hand_state([CE, "mul(-1, mul(sign(y), log(abs(f))))", f"add({CE}, f)", "square(sub(f, y))",
                        "mul(add(1, 1), square(sub(f, y)))"])
    assert steps.task_kind(state) == "classification"
    keys = steps.population_keys(state)
    assert keys[0] == keys[1] == keys[2] == canonical_key(parse(CE), "classification")
    assert len(set(keys[2:])) == 3  # a rescaled loss is another loss
    assert [w.index for w in steps.pending_work(state)] == [0, 3, 4]
    events = steps.apply_outcomes(state, {0: Outcome(0.2), 3: Outcome(0.3), 4: Outcome(0.25)})
    assert [(e.index, e.cache_hit, e.fitness) for e in events] == [
        (0, False, 0.2), (1, True, 0.2), (2, True, 0.2), (3, False, 0.3), (4, False, 0.25)]
    assert [e.latex for e in events[:2]] == [r"- y \log{\left(f(x) \right)}"] * 2  # printed simplified
    assert [h.expression for h in state.hall_of_fame] == [CE, "mul(add(1, 1), square(sub(f, y)))", "square(sub(f, y))"]
    assert state.signatures[gradient_signature(parse(CE), "classification")] == keys[0]


def test_under_the_tuned_protocol_a_rescaled_loss_is_the_same_candidate():
    """The tuned fitness scales every loss to one gradient size, so 2 x L trains exactly as L does."""
    state = hand_state(["square(sub(f, y))", "mul(add(1, 1), square(sub(f, y)))", "mul(-1, square(sub(f, y)))"],
                       protocol="tuned")
    keys = steps.population_keys(state)
    assert keys[0] == keys[1] != keys[2]  # a negative factor turns the gradient around: another loss
    assert [w.index for w in steps.pending_work(state)] == [0, 2]


def test_a_later_candidate_with_a_known_gradient_takes_the_cached_key_through_json():
    first = hand_state([CE])
    steps.apply_outcomes(first, {0: Outcome(0.2)})
    later = state_from_dict(json.loads(json.dumps(state_to_dict(first))))
    later.population, later.progress = [parse(f"add({CE}, f)"), parse("square(sub(f, y))")], None
    assert steps.population_keys(later)[0] == canonical_key(parse(CE), "classification")
    assert [w.index for w in steps.pending_work(later)] == [1]


def test_regression_keeps_abs_y_and_y_apart_but_joins_losses_that_differ_by_a_function_of_y():
    state = hand_state(["square(sub(f, y))", "add(square(sub(f, y)), abs(y))", "add(square(sub(f, y)), y)",
                        "mul(abs(y), f)", "mul(y, f)"], dataset="diabetes")
    keys = steps.population_keys(state)
    assert keys[0] == keys[1] == keys[2] and keys[3] != keys[4]
    assert [w.index for w in steps.pending_work(state)] == [0, 3, 4]


def _distinct_for_the_task(entries, kind):
    forms = [canonical_key(parse(h.expression), kind) for h in entries]
    signatures = [gradient_signature(parse(h.expression), kind) for h in entries]
    return len(set(forms)) == len(forms) and len(set(signatures)) == len(signatures)


@pytest.mark.parametrize("dataset", ["digits", "diabetes"])
def test_a_search_s_hall_of_fame_holds_no_two_entries_that_are_one_loss_for_the_task(dataset):
    config = fake_config(task={"dataset": dataset}, search={"population_size": 20, "generations": 5,
                                                            "hall_of_fame_size": 10})
    events = []
    result = run_search(config, events.append, evaluator_factory=KeyedEvaluator)
    kind = "classification" if dataset == "digits" else "regression"
    evaluated = [e for e in events if isinstance(e, CandidateEvaluated)]
    # the search met different trees of one loss (so the property below is not vacuous) ...
    trees_per_key = {}
    for e in evaluated:
        trees_per_key.setdefault(e.canonical_key, set()).add(canonical_key(parse(e.expression)))
    assert any(len(forms) > 1 for forms in trees_per_key.values())
    # ... and every hall of fame it reported held each loss once
    halls = [g.hall_of_fame for g in events if isinstance(g, GenerationFinished)]
    assert len(result.hall_of_fame) == 10 and all(_distinct_for_the_task(hall, kind) for hall in halls)


def _copy(name: str, tmp_path: Path) -> tuple[Path, ExperimentConfig]:
    """A copy of an old checkpoint, and the configuration it was written with (resumed as it ran)."""
    path = tmp_path / name
    shutil.copy(OLD / name, path)
    return path, load_config(json.loads(path.read_text())["config"])


def test_a_checkpoint_written_between_generations_before_keys_knew_the_task_resumes(tmp_path):
    path, config = _copy("between_generations.json", tmp_path)
    old = json.loads(path.read_text())
    assert "signatures" not in old and old["next_generation"] == 2  # as written then
    state = load(path)
    assert not state.legacy_keys and state.signatures == {}
    resumed = run_search(config, checkpoint_path=path, resume=True, evaluator_factory=KeyedEvaluator)
    assert resumed.status == "completed" and len(resumed.history) == 4
    kept = [(g.generation, g.best_fitness, g.best_expression) for g in resumed.history[:2]]
    assert kept == [(g["generation"], g["best_fitness"], g["best_expression"]) for g in old["history"]]
    assert _distinct_for_the_task(resumed.hall_of_fame, "classification")
    assert json.loads(path.read_text())["signatures"]  # written again in today's form


def test_a_checkpoint_written_mid_generation_before_keys_knew_the_task_finishes_that_generation(tmp_path):
    path, config = _copy("mid_generation.json", tmp_path)
    state = load(path)
    assert state.legacy_keys and state.progress.generation == 1
    # Candidates behind the first gap were cache hits under the old keys; under today's keys they are
    # not cached and not work either, so only the old keys can finish this generation.
    waiting = [i for i in range(state.progress.reported, len(state.population)) if i not in state.progress.new]
    assert waiting and all(canonical_key(state.population[i], "classification") not in state.cache for i in waiting)
    events = []
    resumed = run_search(config, events.append, checkpoint_path=path, resume=True, evaluator_factory=KeyedEvaluator)
    first = [e for e in events if isinstance(e, CandidateEvaluated) and e.generation == 1]
    assert len(first) == len(state.population) - state.progress.reported  # the rest of generation 1, once
    assert resumed.status == "completed" and [g.generation for g in resumed.history] == [0, 1, 2, 3]
    assert _distinct_for_the_task(resumed.hall_of_fame, "classification")
    assert not load(path).legacy_keys
