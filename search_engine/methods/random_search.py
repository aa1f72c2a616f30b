"""Random search: EvoMAL's budget and scoring without evolution, the control an evolutionary result needs.

Every generation is drawn afresh from the distribution of the first one (ramped half-and-half trees
of `search.init_min_height` to `search.init_max_height`, from the search's seeded generator); no
selection, crossover or mutation. Everything else is EvoMAL's: the same population size and number
of generations, the equivalence cache (a loss drawn twice is scored once), the rejection screen,
local search of the accepted losses' edge weights, the fitness protocol and the hall of fame. So
a difference between EvoMAL and random search on the same configuration is what evolution adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_engine.methods.evolutionary import Evolutionary


@dataclass(frozen=True)
class RandomSearch(Evolutionary):
    """EvoMAL's method with `breed` replaced by a fresh draw."""

    name: str = "random"

    def breed(self, state) -> None:
        from search_engine.evolution import operators

        just_finished = state.history and state.history[-1].generation == state.next_generation - 1
        if state.progress is not None or not just_finished:
            raise ValueError("breed: the current generation must be finished (finish_generation) first")
        s = state.config["search"]
        state.population = operators.initial_population(
            state.rng, s["population_size"], min_height=s["init_min_height"], max_height=s["init_max_height"])
        state.legacy_keys = False


RANDOM = RandomSearch()
