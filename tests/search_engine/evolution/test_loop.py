import pytest

from search_engine.evolution.checkpoint import load
from search_engine.evolution.events import (
    CandidateEvaluated,
    CandidateRefined,
    GenerationFinished,
    SearchFinished,
    SearchStarted,
)
from search_engine.expr.symbolic import canonical_key
from search_engine.expr.tree import CROSS_ENTROPY, parse
from search_engine.scoring.sequential import SequentialEvaluator
from search_engine.study.driver import run_search

from ..conftest import tiny_config


def comparable(events):
    """Event dicts without wall-clock fields."""
    return [{k: v for k, v in e.to_dict().items() if k != "seconds"} for e in events]


def run_collect(config, **kw):
    events = []
    result = run_search(config, events.append, **kw)
    return result, events


def test_event_stream_shape_and_totals():
    config = tiny_config()
    result, events = run_collect(config)
    assert isinstance(events[0], SearchStarted) and isinstance(events[-1], SearchFinished)
    cands = [e for e in events if isinstance(e, CandidateEvaluated)]
    gens = [e for e in events if isinstance(e, GenerationFinished)]
    assert len(cands) == 6 * 3 and [g.generation for g in gens] == [0, 1, 2]
    assert result.status == "completed" and len(result.history) == 3
    assert result.totals["evaluated"] == len(cands)
    assert result.totals["rejected"] == sum(c.fitness is None for c in cands)
    assert result.totals["cache_hits"] == sum(c.cache_hit for c in cands)
    for c in cands:
        assert (c.fitness is None) == (c.rejection_reason is not None)
        assert parse(c.expression) is not None and c.latex
    # the hall of fame is sorted and holds distinct canonical forms
    fits = [h.fitness for h in result.hall_of_fame]
    assert fits == sorted(fits) and len({h.canonical_key for h in result.hall_of_fame}) == len(fits)
    assert result.best == result.hall_of_fame[0]


def test_seeded_known_losses_make_the_first_generation_no_worse_than_baseline():
    result, events = run_collect(tiny_config())
    first = next(e for e in events if isinstance(e, CandidateEvaluated))
    assert first.canonical_key == canonical_key(CROSS_ENTROPY, "classification")
    assert first.fitness == result.baseline_fitness
    assert result.history[0].best_fitness <= result.baseline_fitness


def test_elitism_keeps_best_fitness_from_getting_worse():
    result, _ = run_collect(tiny_config(search={"generations": 4}))
    bests = [g.best_fitness for g in result.history]
    assert all(b <= a for a, b in zip(bests, bests[1:])), bests


@pytest.mark.parametrize("strategy", ["batched", "sequential"])
def test_two_runs_with_the_same_seed_are_identical_and_another_seed_differs(strategy):
    _, a = run_collect(tiny_config(evaluation={"strategy": strategy}))
    _, b = run_collect(tiny_config(evaluation={"strategy": strategy}))
    _, c = run_collect(tiny_config(seed=4, evaluation={"strategy": strategy}))
    assert comparable(a) == comparable(b)
    assert [e.expression for e in a if isinstance(e, CandidateEvaluated)] != [
        e.expression for e in c if isinstance(e, CandidateEvaluated)
    ]


@pytest.mark.parametrize("mode", ["off", "top_k"])
def test_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path, mode):
    config = tiny_config(search={"generations": 4}, local_search={"mode": mode, "top_k": 1, "meta_steps": 2})
    full, _ = run_collect(config, checkpoint_path=tmp_path / "full.json")

    seen = []

    def stop_after_second_generation():
        return sum(isinstance(e, GenerationFinished) for e in seen) >= 2

    part, _ = run_search(config, seen.append, stop_after_second_generation, checkpoint_path=tmp_path / "c.json"), None
    assert part.status == "stopped" and len(part.history) == 2
    assert load(tmp_path / "c.json").next_generation == 2
    resumed, events = run_collect(config, checkpoint_path=tmp_path / "c.json", resume=True)
    assert events[0].start_generation == 2
    assert resumed.status == "completed"
    assert comparable(resumed.history) == comparable(full.history)
    assert resumed.hall_of_fame == full.hall_of_fame


def test_resume_may_extend_generations_but_not_change_the_experiment(tmp_path):
    import pytest

    from search_engine.evolution.checkpoint import CheckpointError

    path = tmp_path / "c.json"
    run_search(tiny_config(search={"generations": 2}), checkpoint_path=path)
    longer = run_search(tiny_config(search={"generations": 3}), checkpoint_path=path, resume=True)
    assert len(longer.history) == 3
    with pytest.raises(CheckpointError, match="different configuration"):
        run_search(tiny_config(search={"generations": 3}, seed=9), checkpoint_path=path, resume=True)


def test_stop_between_candidates_keeps_what_was_found():
    seen = []
    # One candidate per evaluator call (a batched evaluator is asked between chunks instead).
    config = tiny_config(evaluation={"strategy": "sequential"})
    result = run_search(config, seen.append, lambda: sum(isinstance(e, CandidateEvaluated) for e in seen) >= 3)
    assert result.status == "stopped"
    assert sum(isinstance(e, CandidateEvaluated) for e in seen) == 3
    assert result.history == ()
    assert result.best is not None  # the candidates evaluated before the stop are kept
    assert isinstance(seen[-1], SearchFinished) and seen[-1].status == "stopped"


class CountingEvaluator(SequentialEvaluator):
    calls: list = []

    def evaluate(self, trees):
        CountingEvaluator.calls.extend(canonical_key(t, "classification") for t in trees)
        return super().evaluate(trees)


def test_equivalent_candidates_are_evaluated_once():
    CountingEvaluator.calls = []
    result, events = run_collect(tiny_config(search={"generations": 4}), evaluator_factory=CountingEvaluator)
    assert len(CountingEvaluator.calls) == len(set(CountingEvaluator.calls))
    cands = [e for e in events if isinstance(e, CandidateEvaluated)]
    assert len(CountingEvaluator.calls) + result.totals["cache_hits"] == len(cands)
    assert result.totals["cache_hits"] > 0  # elites alone are re-seen every generation


def test_local_search_on_every_accepted_candidate_records_weights():
    result, events = run_collect(tiny_config(search={"generations": 2}, local_search={"mode": "all", "meta_steps": 3}))
    scored = [e for e in events if isinstance(e, CandidateEvaluated) and e.fitness is not None]
    assert scored
    for e in scored:
        assert e.weights is not None and len(e.weights) == parse(e.expression).size() - 1
    rejected = [e for e in events if isinstance(e, CandidateEvaluated) and e.fitness is None]
    assert all(e.weights is None for e in rejected if e.rejection_reason != "non-finite loss or weights during training")
    assert all(h.weights is not None for h in result.hall_of_fame)


def test_top_k_refines_only_the_best_and_never_twice():
    config = tiny_config(search={"generations": 3}, local_search={"mode": "top_k", "top_k": 2, "meta_steps": 3})
    result, events = run_collect(config)
    refined = [e for e in events if isinstance(e, CandidateRefined)]
    assert refined
    per_generation = {}
    for e in refined:
        per_generation[e.generation] = per_generation.get(e.generation, 0) + 1
        assert len(e.weights) == parse(e.expression).size() - 1
    assert max(per_generation.values()) <= 2
    assert len({e.canonical_key for e in refined}) == len(refined)  # the cache remembers refined weights
    # the generation summary uses the kept (better of symbolic and refined) fitness
    for g in result.history:
        gen_refined = [e for e in refined if e.generation == g.generation]
        for e in gen_refined:
            kept = min(f for f in (e.symbolic_fitness, e.fitness) if f is not None)
            assert g.best_fitness <= kept


def test_the_auto_plan_is_recorded_and_reused_on_resume(tmp_path, monkeypatch):
    import search_engine.scoring.plan as evaluators

    config = tiny_config(search={"generations": 2}, evaluation={"strategy": "auto"})
    path = tmp_path / "c.json"
    first, events = run_collect(config, checkpoint_path=path)
    plan = first.plan
    assert plan["strategy"] in ("sequential", "batched") and plan["device"] == "cpu"
    assert events[0].plan == plan and load(path).plan == plan and first.to_dict()["plan"] == plan

    def no_measuring(*_args):
        raise AssertionError("a resumed 'auto' search must reuse its recorded plan, not time the machine again")

    monkeypatch.setattr(evaluators, "measure_plan", no_measuring)
    longer, events = run_collect(tiny_config(search={"generations": 3}, evaluation={"strategy": "auto"}),
                                 checkpoint_path=path, resume=True)
    assert longer.status == "completed" and len(longer.history) == 3
    assert {k: v for k, v in longer.plan.items() if k != "reason"} == {k: v for k, v in plan.items() if k != "reason"}


def test_resume_may_change_how_a_search_runs_and_names_what_may_not_change(tmp_path):
    from search_engine.evolution.checkpoint import CheckpointError

    path = tmp_path / "c.json"
    first = run_search(tiny_config(search={"generations": 1}), checkpoint_path=path)
    resumed = run_search(tiny_config(search={"generations": 2}, evaluation={"strategy": "sequential"}),
                         checkpoint_path=path, resume=True)
    how = {k: v for k, v in resumed.plan.items() if k != "search_rate"}
    assert how == {"strategy": "sequential", "device": "cpu", "threads": 1} and len(resumed.history) == 2
    assert resumed.plan["search_rate"] == first.plan["search_rate"]  # the rate chosen once, kept
    with pytest.raises(CheckpointError, match=r"\(seed, training\.lr changed\)"):
        run_search(tiny_config(search={"generations": 3}, seed=9, training={"lr": 0.5}),
                   checkpoint_path=path, resume=True)


def test_checkpoints_without_a_plan_still_resume(tmp_path):
    import json

    path = tmp_path / "c.json"
    run_search(tiny_config(search={"generations": 1}), checkpoint_path=path)
    data = json.loads(path.read_text())
    del data["plan"]  # as written before plans were recorded
    path.write_text(json.dumps(data))
    assert load(path).plan is None
    resumed = run_search(tiny_config(search={"generations": 2}), checkpoint_path=path, resume=True)
    assert resumed.status == "completed" and resumed.plan["strategy"] == "batched"
