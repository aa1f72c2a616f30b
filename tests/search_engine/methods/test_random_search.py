"""Random search: every generation a fresh draw from generation 0's distribution, scored as EvoMAL's."""

from __future__ import annotations

import random

from search_engine.evolution import operators
from search_engine.evolution.events import CandidateEvaluated
from search_engine.evolution.steps import seed_losses
from search_engine.expr.tree import to_prefix
from search_engine.study.driver import run_search

from ..conftest import tiny_config, without_seconds


def random_config(generations: int = 3, method: str = "random", **sections):
    return tiny_config(method=method, search={"population_size": 6, "generations": generations}, **sections)


def test_each_generation_is_a_fresh_draw_from_the_search_generator():
    config = random_config()
    events = []
    result = run_search(config, events.append)
    drawn = {}
    for e in events:
        if isinstance(e, CandidateEvaluated):
            drawn.setdefault(e.generation, []).append(e.expression)
    rng, s = random.Random(config.seed), config.search
    low, high = s.init_min_height, s.init_max_height
    expected = [operators.initial_population(rng, 6, seeds=seed_losses("classification", True),
                                             min_height=low, max_height=high)]
    expected += [operators.initial_population(rng, 6, min_height=low, max_height=high) for _ in range(2)]
    assert [drawn[g] for g in range(3)] == [[to_prefix(t) for t in population] for population in expected]
    assert result.totals["evaluated"] == 18 and result.hall_of_fame  # EvoMAL's budget: 6 x 3 scored


def test_random_search_is_reproducible_and_differs_from_evomal_after_generation_0():
    a, b = run_search(random_config()), run_search(random_config())
    assert without_seconds(a.to_dict()["history"]) == without_seconds(b.to_dict()["history"])
    evomal = run_search(random_config(method="evomal"))
    assert a.history[0].best_fitness == evomal.history[0].best_fitness  # one generation 0 for both
    assert [g.best_expression for g in a.history] != [g.best_expression for g in evomal.history]


def test_local_search_refines_its_candidates_as_evomal_s(tmp_path):
    result = run_search(random_config(local_search={"mode": "all", "meta_steps": 2}),
                        checkpoint_path=tmp_path / "c.json")
    assert any(h.weights is not None for h in result.hall_of_fame)
    resumed = run_search(random_config(4, local_search={"mode": "all", "meta_steps": 2}),
                         checkpoint_path=tmp_path / "c.json", resume=True)
    assert len(resumed.history) == 4 and resumed.history[:3] == result.history[:3]
