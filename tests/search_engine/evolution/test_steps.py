"""The search as pure steps (search_engine.evolution.steps): driven by hand, in any order, any number
of times, through JSON between any two steps, it gives what run_search gives."""

from __future__ import annotations

import json
import random
import zlib

import pytest

from search_engine.evolution import steps
from search_engine.evolution.checkpoint import SearchState, load, save, state_from_dict, state_to_dict
from search_engine.evolution.events import (
    CandidateEvaluated,
    GenerationFinished,
    SearchFinished,
    SearchStarted,
)
from search_engine.expr.symbolic import canonical_key
from search_engine.expr.tree import KNOWN_LOSSES, parse, to_prefix
from search_engine.scoring.sequential import Outcome
from search_engine.study.driver import run_search

from ..conftest import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _score(tree) -> float:
    """A fitness in [0, 1) read off the canonical form (crc32: the same in every process)."""
    return zlib.crc32(canonical_key(tree).encode()) / 2**32


class KeyedEvaluator:
    """A deterministic stand-in for training: fitness from the canonical form, some rejected, and
    refinement that helps half the forms and hurts the other half (so both outcomes are kept)."""

    chunk_size = 2

    def __init__(self, task=None, config=None):
        self.calls = 0

    def fitness(self, tree, weights=None) -> Outcome:
        return Outcome(_score(tree), None, weights)

    def evaluate(self, trees) -> list[Outcome]:
        self.calls += 1
        return [Outcome(None, "test: rejected") if _score(t) > 0.85 else self.fitness(t) for t in trees]

    def refine(self, tree) -> Outcome:
        f = _score(tree)
        better = zlib.crc32(to_prefix(tree).encode()) % 2 == 0
        return Outcome(f / 2 if better else f * 2, None, (0.5,) * (tree.size() - 1))


def fake_config(**overrides):
    search = {"population_size": 10, "generations": 4, **overrides.pop("search", {})}
    return tiny_config(search=search, local_search={"mode": "top_k", "top_k": 2}, **overrides)


def reload(state: SearchState) -> SearchState:
    """The state after a trip through JSON, as a web driver stores it between steps."""
    return state_from_dict(json.loads(json.dumps(state_to_dict(state))))


def comparable(events):
    return [{k: v for k, v in e.to_dict().items() if k != "seconds"} for e in events]


def search_events(events):
    """run_search's events less the ones only a driver emits (start, finish)."""
    return comparable([e for e in events if not isinstance(e, (SearchStarted, SearchFinished))])


def drive(config, evaluator, *, arrange=list, repeat=1, hop=lambda state: state):
    """Run the search by hand: each generation's chunks evaluated in the order `arrange` gives them,
    every chunk's outcomes applied `repeat` times, and `hop` applied to the state between any two
    steps. Returns the final state and the events."""
    kind = "classification"
    baseline = evaluator.fitness(KNOWN_LOSSES[steps.baseline_name(kind)]).fitness
    state = hop(steps.fresh_state(config, kind, baseline))
    events = []
    while not steps.is_finished(state):
        batches = steps.chunks(steps.pending_work(state), evaluator.chunk_size)
        state = hop(state)
        for batch in arrange(batches):
            outcomes = dict(zip([item.index for item in batch], evaluator.evaluate([i.tree for i in batch])))
            for _ in range(repeat):
                events += steps.apply_outcomes(state, outcomes)
                state = hop(state)
        events += steps.apply_outcomes(state, {})  # releases the cache hits when there was no work
        state = hop(state)
        got = {}
        for item in arrange(steps.refinement_work(state)):
            got[item.index] = evaluator.refine(item.tree)
            events += steps.apply_refinements(state, got)  # all it has: applies the completed prefix
            state = hop(state)
        events.append(steps.finish_generation(state, 0.0))
        state = hop(state)
        if not steps.is_finished(state):
            steps.breed(state)
            state = hop(state)
    return state, events


def shuffled(seed):
    return lambda items: random.Random(seed).sample(list(items), len(items))


def assert_same_search(state, events, result, result_events):
    assert comparable(events) == search_events(result_events)
    assert comparable(state.history) == comparable(result.history)
    assert tuple(state.hall_of_fame) == result.hall_of_fame and state.totals == result.totals


@pytest.fixture(scope="module")
def keyed_search():
    config = fake_config()
    events = []
    result = run_search(config, events.append, evaluator_factory=KeyedEvaluator)
    return config, result, events


def test_hand_driven_real_evaluation_in_shuffled_order_and_twice_equals_run_search():
    from search_engine.scoring.plan import make_evaluator
    from search_engine.tasks.task import load_task

    config = tiny_config(evaluation={"max_population_chunk": 2})  # batched, several chunks a generation
    result_events = []
    result = run_search(config, result_events.append)
    evaluator = make_evaluator(load_task(config), config)
    state, events = drive(config, evaluator, arrange=shuffled(0), repeat=2)
    assert evaluator.chunk_size == 2
    assert_same_search(state, events, result, result_events)
    assert any(e.cache_hit for e in events if isinstance(e, CandidateEvaluated))


def test_a_json_round_trip_between_any_two_steps_changes_nothing(keyed_search):
    config, result, result_events = keyed_search
    assert any(e.type == "candidate_refined" for e in result_events)
    state, events = drive(config, KeyedEvaluator(), hop=reload)
    assert_same_search(state, events, result, result_events)
    assert state_to_dict(state) == state_to_dict(drive(config, KeyedEvaluator())[0])


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_do_not_depend_on_how_many_workers_take_the_chunks(keyed_search, workers):
    config, result, result_events = keyed_search

    def fan_out(batches):
        """Worker w takes every workers-th chunk; the last worker's results come back first."""
        return [b for w in reversed(range(workers)) for b in batches[w::workers]]

    state, events = drive(config, KeyedEvaluator(), arrange=fan_out)
    assert_same_search(state, events, result, result_events)


def test_chunks_are_consecutive_runs_of_the_pending_work():
    items = list(range(7))
    assert steps.chunks(items, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert steps.chunks(items, 25) == [items] and steps.chunks([], 4) == []
    with pytest.raises(ValueError, match="chunk_size"):
        steps.chunks(items, 0)


def hand_state(expressions, cache=None, local_search=None):
    config = tiny_config(local_search=local_search or {"mode": "off"})
    return SearchState(config=config.to_dict(), next_generation=0,
                       population=[parse(e) for e in expressions], rng=random.Random(0), cache=dict(cache or {}))


def test_pending_work_lists_each_new_canonical_form_once_and_holds_events_in_population_order():
    cached = canonical_key(parse("mul(y, f)"), "classification")  # tiny_config: digits
    state = hand_state(["add(y, f)", "add(f, y)", "square(sub(f, y))", "add(y, f)", "mul(y, f)"],
                       cache={cached: Outcome(0.7)})
    work = steps.pending_work(state)
    assert [w.index for w in work] == [0, 2] and len({w.canonical_key for w in work}) == 2
    assert [parse(w.expression) for w in work] == [state.population[0], state.population[2]]
    assert steps.apply_outcomes(state, {2: Outcome(0.5)}) == []  # candidate 0 is not known yet
    assert [w.index for w in steps.pending_work(state)] == [0]
    events = steps.apply_outcomes(state, {0: Outcome(None, "rejected")})
    assert [(e.index, e.cache_hit, e.fitness) for e in events] == [
        (0, False, None), (1, True, None), (2, False, 0.5), (3, True, None), (4, True, 0.7)]
    assert state.totals == {"evaluated": 5, "rejected": 3, "cache_hits": 3}
    before = state_to_dict(state)
    assert steps.apply_outcomes(state, {0: Outcome(0.1), 2: Outcome(0.5)}) == []  # the first outcome stays
    assert state_to_dict(state) == before
    for not_work in (1, 4, 9):
        with pytest.raises(ValueError, match=f"candidate {not_work} is not work of generation 0"):
            steps.apply_outcomes(state, {not_work: Outcome(0.2)})
    summary = steps.finish_generation(state, 1.5)
    assert (summary.cache_hits, summary.rejected, summary.best_fitness) == (3, 3, 0.5)
    assert state.next_generation == 1 and state.history == [summary] and "progress" not in state_to_dict(state)


def test_steps_out_of_turn_are_refused():
    state = hand_state(["add(y, f)", "mul(y, f)"])
    with pytest.raises(ValueError, match="not evaluated or not reported"):
        steps.finish_generation(state, 0.0)
    with pytest.raises(ValueError, match="must be finished"):
        steps.breed(state)
    with pytest.raises(TypeError, match="not an Outcome"):
        steps.apply_outcomes(state, {0: 0.5})
    steps.apply_outcomes(state, {0: Outcome(0.5), 1: Outcome(0.25)})
    steps.finish_generation(state, 0.0)
    steps.breed(state)
    assert state.next_generation == 1 and len(state.population) == 2


def test_top_k_refinement_keeps_the_better_outcome_in_work_order_and_never_applies_twice():
    # Four losses with four gradients (sub(f, y) would be add(y, f): both sum to a constant over the classes).
    state = hand_state(["add(y, f)", "mul(y, f)", "mul(f, f)", "max(y, f)"],
                       local_search={"mode": "top_k", "top_k": 2})
    steps.apply_outcomes(state, {0: Outcome(0.4), 1: Outcome(0.1), 2: Outcome(0.3), 3: Outcome(None, "x")})
    assert [w.index for w in steps.refinement_work(state)] == [1, 2]  # the two best, best first
    with pytest.raises(ValueError, match="finish_generation: .* refinements not applied"):
        steps.finish_generation(state, 0.0)
    assert steps.apply_refinements(state, {2: Outcome(0.05, None, (0.5, 0.5))}) == []  # waits for 1
    worse = steps.apply_refinements(state, {1: Outcome(0.2, None, (2.0, 2.0))})
    assert [(e.index, e.symbolic_fitness, e.fitness) for e in worse] == [(1, 0.1, 0.2)]
    state = reload(state)  # mid-refinement: the kept symbolic outcome does not make 1 pending again
    assert [w.index for w in steps.refinement_work(state)] == [2]
    better = steps.apply_refinements(state, {1: Outcome(0.2), 2: Outcome(0.05, None, (0.5, 0.5))})
    assert [(e.index, e.symbolic_fitness, e.fitness) for e in better] == [(2, 0.3, 0.05)]
    assert steps.refinement_work(state) == [] and steps.apply_refinements(state, {2: Outcome(0.01)}) == []
    with pytest.raises(ValueError, match=r"candidates \[0\] are not refinement work"):
        steps.apply_refinements(state, {0: Outcome(0.01)})
    assert steps.fitnesses(state) == [0.4, 0.1, 0.05, None]
    assert [(h.fitness, h.weights) for h in state.hall_of_fame[:2]] == [(0.05, (0.5, 0.5)), (0.1, None)]
    assert steps.finish_generation(state, 0.0).best_fitness == 0.05


def test_run_search_resumes_a_state_stored_mid_generation(tmp_path, keyed_search):
    config, result, _ = keyed_search
    evaluator = KeyedEvaluator()
    state = steps.fresh_state(config, "classification", evaluator.fitness(KNOWN_LOSSES["cross_entropy"]).fitness)
    first = steps.chunks(steps.pending_work(state), evaluator.chunk_size)[0]
    early = steps.apply_outcomes(state, dict(zip([i.index for i in first], evaluator.evaluate([i.tree for i in first]))))
    path = tmp_path / "mid.json"
    save(path, state)
    assert load(path).progress.reported == len(early) > 0
    events = []
    resumed = run_search(config, events.append, checkpoint_path=path, resume=True, evaluator_factory=KeyedEvaluator)
    gen0 = [e for e in events if isinstance(e, CandidateEvaluated) and e.generation == 0]
    assert len(early) + len(gen0) == config.search.population_size  # what was reported is not reported again
    assert comparable(resumed.history) == comparable(result.history) and resumed.hall_of_fame == result.hall_of_fame
    assert resumed.totals == result.totals
    assert "progress" not in json.loads(path.read_text())  # written between generations: the old format
    assert isinstance(events[-2], GenerationFinished)
