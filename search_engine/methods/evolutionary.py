"""EvoMAL and GP-LFL: the genetic-programming loss search, as a method of the one driver.

The steps are `evolution.steps` (pure functions over a serialisable `SearchState`). Phase
"evaluate": the first candidate of each canonical form not cached, in chunks of the evaluator's
chunk size (rejection screen, local search with mode "all", fitness); phase "refine" (local
search mode "top_k"): the generation's best few forms, one evaluator call each. GP-LFL is the
same search with every candidate scored as its symbolic expression (local search off), the
baseline of the EvoMAL paper.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_engine.study.method import Method, WorkCounts

EVALUATE, REFINE = "evaluate", "refine"


@dataclass(frozen=True)
class Evolutionary(Method):
    """EvoMAL (`name` "evomal") or GP-LFL ("gplfl")."""

    name: str = "evomal"
    phases: tuple[str, ...] = (EVALUATE, REFINE)

    def settings(self, config):
        from search_engine.methods.settings import effective

        return effective(config)

    def planned_work(self, config) -> WorkCounts:
        """Every candidate screened and scored; refined (meta-gradients) by the local search's mode: all
        of them, each generation's best top_k (which are then scored again), or none (GP-LFL); the
        meta-test trains the learned loss with and without its refined weights beside the baseline."""
        s, ls = config.search, config.local_search
        mode = self.settings(config).local_search.mode
        candidates = s.population_size * s.generations
        refined = {"all": candidates, "top_k": s.generations * min(ls.top_k, s.population_size)}.get(mode, 0)
        refitted = refined if mode == "top_k" else 0
        runs_per_seed = 3 if mode != "off" else 2
        return WorkCounts(candidates, refitted, candidates, refined * ls.meta_steps * ls.inner_steps,
                          config.meta_test.seeds * runs_per_seed)

    def fresh_state(self, config, kind, baseline_fitness):
        from search_engine.evolution import steps

        return steps.fresh_state(config, kind, baseline_fitness)

    def state_to_dict(self, state):
        from search_engine.evolution.checkpoint import state_to_dict

        return state_to_dict(state)

    def state_from_dict(self, data):
        from search_engine.evolution.checkpoint import state_from_dict

        return state_from_dict(data)

    def next_generation(self, state) -> int:
        return state.next_generation

    def is_finished(self, state) -> bool:
        from search_engine.evolution import steps

        return steps.is_finished(state)

    def work(self, state, phase, chunk_size):
        from search_engine.evolution import steps

        if phase == EVALUATE:
            return steps.chunks(steps.pending_work(state), chunk_size)
        return [[item] for item in steps.refinement_work(state)]

    def evaluate(self, evaluator, phase, items):
        trees = [item.tree for item in items]
        if phase == EVALUATE:
            return evaluator.evaluate(trees)
        return [evaluator.refine(tree) for tree in trees]

    def apply(self, state, phase, outcomes):
        from search_engine.evolution import steps

        if phase == EVALUATE:
            return steps.apply_outcomes(state, outcomes)
        return steps.apply_refinements(state, outcomes)

    def finish_generation(self, state, seconds):
        from search_engine.evolution import steps

        return steps.finish_generation(state, seconds)

    def breed(self, state) -> None:
        from search_engine.evolution import steps

        steps.breed(state)

    def item_to_dict(self, item) -> dict:
        return item.to_dict()

    def item_from_dict(self, data):
        from search_engine.evolution.steps import WorkItem

        return WorkItem(**data)


EVOMAL = Evolutionary("evomal")
GPLFL = Evolutionary("gplfl")
