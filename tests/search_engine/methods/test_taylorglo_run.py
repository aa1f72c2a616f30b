"""TaylorGLO runs: seeded reproducibility, events, checkpoint / resume, stopping, diverging candidates."""

from __future__ import annotations

import json

import pytest

from search_engine.evolution.checkpoint import CheckpointError
from search_engine.evolution.events import (
    CandidateEvaluated,
    GenerationFinished,
    SearchFinished,
    SearchStarted,
)
from search_engine.expr.tree import parse
from search_engine.methods.taylorglo import WORST_TOLD
from search_engine.methods.taylorglo_poly import POLYNOMIAL_EXPRESSION, polynomial_tree
from search_engine.methods.taylorglo_state import new_optimizer
from search_engine.scoring.plan import make_evaluator
from search_engine.scoring.sequential import TRAINING_DIVERGED
from search_engine.study.driver import run_search

from ..conftest import tiny_config, without_seconds

POPULATION, GENERATIONS = 4, 3


def taylorglo_config(**overrides):
    sections = {"task": {"max_train": 200}, "training": {"steps": 15},
                "taylorglo": {"population_size": POPULATION, "generations": GENERATIONS}}
    for name, values in overrides.items():
        sections[name] = {**sections.get(name, {}), **values} if isinstance(values, dict) else values
    return tiny_config(method="taylorglo", **sections)



def run(config, tmp_path=None, name="checkpoint.json", **kwargs):
    events = []
    path = tmp_path / name if tmp_path is not None else None
    result = run_search(config, events.append, checkpoint_path=path, **kwargs)
    return result, events


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("taylorglo")
    result, events = run(taylorglo_config(), folder)
    return result, events, folder / "checkpoint.json"


def test_a_seeded_run_is_reproducible_bit_for_bit(uninterrupted):
    result, events, _ = uninterrupted
    again, again_events = run(taylorglo_config())
    assert without_seconds(again.to_dict()) == without_seconds(result.to_dict())
    assert [without_seconds(e.to_dict()) for e in again_events] == [without_seconds(e.to_dict()) for e in events]
    other, _ = run(taylorglo_config(seed=4))
    assert other.history[0].hall_of_fame != result.history[0].hall_of_fame  # the seed does drive the run


def test_events_describe_every_candidate_and_generation(uninterrupted):
    result, events, _ = uninterrupted
    assert isinstance(events[0], SearchStarted) and isinstance(events[-1], SearchFinished)
    assert (events[0].generations, events[0].population_size, events[0].start_generation) == (GENERATIONS, POPULATION, 0)
    assert events[0].baseline_loss == "cross_entropy" and events[0].baseline_fitness == result.baseline_fitness
    candidates = [e for e in events if isinstance(e, CandidateEvaluated)]
    assert [(e.generation, e.index) for e in candidates] == [(g, i) for g in range(GENERATIONS) for i in range(POPULATION)]
    assert len({e.canonical_key for e in candidates}) == len(candidates)
    for e in candidates:
        tree = parse(e.expression)
        assert e.expression == POLYNOMIAL_EXPRESSION and len(e.weights) == tree.size() - 1 and not e.cache_hit
    generations = [e for e in events if isinstance(e, GenerationFinished)]
    assert list(result.history) == generations and [g.generation for g in generations] == list(range(GENERATIONS))
    for g in generations:
        scored = [e.fitness for e in candidates if e.generation == g.generation and e.fitness is not None]
        assert g.best_fitness == min(scored) and g.evaluated == POPULATION and g.rejected == POPULATION - len(scored)
    assert result.status == "completed" and result.totals["evaluated"] == POPULATION * GENERATIONS


def test_the_hall_of_fame_holds_the_best_distinct_polynomials_as_weighted_losses(uninterrupted):
    result, events, _ = uninterrupted
    fitnesses = sorted(e.fitness for e in events if isinstance(e, CandidateEvaluated) and e.fitness is not None)
    hall = result.hall_of_fame
    assert [h.fitness for h in hall] == fitnesses[: len(hall)] and len(hall) == 5  # search.hall_of_fame_size
    assert result.best == hall[0] and len({h.canonical_key for h in hall}) == len(hall)
    best_event = next(e for e in events if isinstance(e, CandidateEvaluated) and e.canonical_key == hall[0].canonical_key)
    assert hall[0].weights == best_event.weights and hall[0].expression == POLYNOMIAL_EXPRESSION


def test_cma_es_is_told_the_fitness_and_its_next_generation_depends_on_it(uninterrupted):
    """Replaying the first generation with the told values reproduces the stored second generation;
    telling the same proposals in the reverse order of merit moves CMA-ES elsewhere."""
    _, events, path = uninterrupted
    rounds = json.loads(path.read_text())["rounds"]
    assert len(rounds) == GENERATIONS
    first_fitness = [e.fitness for e in events if isinstance(e, CandidateEvaluated) and e.generation == 0]
    assert rounds[0]["told"] == [WORST_TOLD if f is None else f for f in first_fitness]
    config = taylorglo_config()
    proposals = {}
    for name, order in (("as told", 1), ("reversed", -1)):
        optimizer = new_optimizer(config)
        first = [optimizer.ask() for _ in range(POPULATION)]
        assert [list(x) for x in first] == rounds[0]["solutions"]
        optimizer.tell([(x, order * v) for x, v in zip(first, rounds[0]["told"])])
        proposals[name] = [list(optimizer.ask()) for _ in range(POPULATION)]
    assert proposals["as told"] == rounds[1]["solutions"] != proposals["reversed"]


def test_resume_after_a_stop_between_generations_equals_the_uninterrupted_run(uninterrupted, tmp_path):
    result, events, _ = uninterrupted
    seen = []

    def after_first_generation():
        return any(isinstance(e, GenerationFinished) for e in seen)

    stopped = run_search(taylorglo_config(), seen.append, after_first_generation, checkpoint_path=tmp_path / "c.json")
    assert stopped.status == "stopped" and len(stopped.history) == 1
    assert len(json.loads((tmp_path / "c.json").read_text())["rounds"]) == 1
    resumed_events = []
    resumed = run_search(taylorglo_config(), resumed_events.append, checkpoint_path=tmp_path / "c.json", resume=True)
    assert resumed_events[0].start_generation == 1
    assert without_seconds(resumed.to_dict()) == without_seconds(result.to_dict())
    tail = [without_seconds(e.to_dict()) for e in events if isinstance(e, CandidateEvaluated) and e.generation >= 1]
    assert [without_seconds(e.to_dict()) for e in resumed_events if isinstance(e, CandidateEvaluated)] == tail


def test_a_finished_search_extends_when_generations_are_raised(uninterrupted, tmp_path):
    result, _, _ = uninterrupted
    short, _ = run(taylorglo_config(taylorglo={"generations": 2}), tmp_path)
    extended, _ = run(taylorglo_config(), tmp_path, resume=True)
    assert len(short.history) == 2
    assert without_seconds(extended.to_dict()) == without_seconds(result.to_dict())


def test_a_checkpoint_of_another_configuration_or_method_is_refused(uninterrupted, tmp_path):
    _, _, path = uninterrupted
    with pytest.raises(CheckpointError, match=r"taylorglo\.sigma, training\.lr changed"):
        run_search(taylorglo_config(taylorglo={"sigma": 0.5}, training={"lr": 0.1}), checkpoint_path=path, resume=True)
    evomal_path = tmp_path / "evomal.json"
    run_search(tiny_config(search={"generations": 1}, training={"steps": 5}), checkpoint_path=evomal_path)
    with pytest.raises(CheckpointError, match="written by method 'evomal', not 'taylorglo'"):
        run_search(taylorglo_config(), checkpoint_path=evomal_path, resume=True)


def test_a_damaged_or_replayed_differently_checkpoint_is_refused(uninterrupted, tmp_path):
    _, _, path = uninterrupted
    data = json.loads(path.read_text())
    data["rounds"][1]["solutions"][0][3] += 1e-9  # not what CMA-ES proposes from this seed
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="generation 1 cannot be replayed"):
        run_search(taylorglo_config(), checkpoint_path=changed, resume=True)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        run_search(taylorglo_config(), checkpoint_path=tmp_path / "bad.json", resume=True)


def test_a_stop_between_chunks_keeps_the_candidates_scored_before_it(tmp_path, one_thread):
    seen = []

    def after_two_candidates():
        return sum(isinstance(e, CandidateEvaluated) for e in seen) >= 2

    config = taylorglo_config(evaluation={"strategy": "batched", "max_population_chunk": 2})
    result = run_search(config, seen.append, after_two_candidates, checkpoint_path=tmp_path / "c.json")
    assert result.status == "stopped" and result.history == () and not (tmp_path / "c.json").exists()
    scored = [e for e in seen if isinstance(e, CandidateEvaluated)]
    assert [e.index for e in scored] == [0, 1] and result.totals["evaluated"] == 2
    assert {h.canonical_key for h in result.hall_of_fame} == {e.canonical_key for e in scored if e.fitness is not None}
    assert isinstance(seen[-1], SearchFinished) and seen[-1].status == "stopped"


def test_a_stop_inside_a_training_run_drops_that_chunk(one_thread):
    calls = {"entered": 0, "returned": 0}

    def counting_evaluator(task, config):
        evaluator = make_evaluator(task, config)
        inner = evaluator.fitness_many

        def fitness_many(trees, weights):
            calls["entered"] += 1
            outcomes = inner(trees, weights)
            calls["returned"] += 1
            return outcomes

        evaluator.fitness_many = fitness_many
        return evaluator

    seen = []
    started = lambda: any(isinstance(e, SearchStarted) for e in seen)  # noqa: E731
    asked = []

    def stop_in_training():  # questions after the start: the loop's, the chunk's, then training's own
        if started():
            asked.append(1)
        return len(asked) >= 3

    result = run_search(taylorglo_config(), seen.append, stop_in_training, evaluator_factory=counting_evaluator)
    assert result.status == "stopped" and calls == {"entered": 1, "returned": 0}
    assert not any(isinstance(e, CandidateEvaluated) for e in seen) and result.hall_of_fame == ()


def regression_config(**taylorglo):
    return taylorglo_config(task={"dataset": "diabetes", "model": "logistic"},
                            taylorglo={"population_size": 6, "generations": 2, **taylorglo})


def test_diverging_candidates_get_the_worst_fitness_and_the_run_goes_on(tmp_path, one_thread):
    result, events = run(regression_config(), tmp_path)
    candidates = [e for e in events if isinstance(e, CandidateEvaluated)]
    diverged = [e for e in candidates if e.fitness is None]
    assert diverged and len(diverged) < len(candidates)  # the premise: a mixed generation
    assert all(e.rejection_reason == TRAINING_DIVERGED for e in diverged)
    rounds = json.loads((tmp_path / "checkpoint.json").read_text())["rounds"]
    told = [v for r in rounds for v in r["told"]]
    assert told == [WORST_TOLD if e.fitness is None else e.fitness for e in candidates]
    assert result.status == "completed" and result.totals["rejected"] == len(diverged)
    assert all(h.fitness is not None for h in result.hall_of_fame)
    assert [g.rejected for g in result.history] == [sum(e.fitness is None for e in candidates if e.generation == g)
                                                    for g in range(2)]


def test_a_generation_in_which_everything_diverges_is_recorded_not_fatal(tmp_path, one_thread):
    result, events = run(regression_config(mean=100.0), tmp_path)
    assert result.status == "completed" and len(result.history) == 2
    assert result.best is None and result.hall_of_fame == () and result.totals["rejected"] == 12
    assert all(g.best_fitness is None and g.best_expression is None for g in result.history)
    rounds = json.loads((tmp_path / "checkpoint.json").read_text())["rounds"]
    assert rounds[1]["solutions"] != rounds[0]["solutions"]


def test_a_checkpoint_of_another_method_is_refused(tmp_path):
    path = tmp_path / "evomal.json"
    run_search(tiny_config(search={"generations": 1}), checkpoint_path=path)
    with pytest.raises(CheckpointError, match="written by method 'evomal'"):
        run_search(taylorglo_config(), checkpoint_path=path, resume=True)


def test_the_fixed_tree_is_the_one_the_candidates_use():
    tree, _ = polynomial_tree([0.0] * 8)
    assert parse(POLYNOMIAL_EXPRESSION) == tree


def test_a_stop_while_preparing_ends_before_the_first_generation(tmp_path, one_thread):
    result, events = run(taylorglo_config(), tmp_path, should_stop=lambda: True)
    assert result.status == "stopped" and result.history == () and result.baseline_fitness is None
    assert [type(e) for e in events] == [SearchFinished] and not (tmp_path / "checkpoint.json").exists()
