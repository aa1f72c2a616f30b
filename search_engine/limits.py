"""How big a configuration may be, and how much work it asks for. Torch-free.

`UPPER_BOUNDS` caps every size and step count of a configuration, so a typo (10**9 generations)
is refused where it is typed instead of queueing a search that would never end; each cap is far
above what EvoMAL's own settings use (configs/*.json) and says why it is where it is.
`work_estimate(config)` counts the training work a configuration asks for, for the new-experiment
form, the API's answer and a server's ceiling (the web's LFL_MAX_TRAINING_STEPS).
"""

from __future__ import annotations

from typing import Any

MAX_TREE_HEIGHT = 17  # Koza's static limit (DEAP's default); a tree that tall has up to 2**18 nodes
MAX_POPULATION = 10_000  # EvoMAL uses 25, GP papers rarely exceed a few thousand
MAX_BATCH = 65_536  # more than any training split here (MNIST: 54 000): full-batch training fits
SEED_RANGE = (0, 2**32 - 1)  # what numpy/scikit-learn accept as a random_state (the splits use it)

#: Dotted field -> the largest value it may take.
UPPER_BOUNDS: dict[str, int] = {
    "task.max_train": 10_000_000,  # no bundled, torchvision or 200 MB uploaded set has more samples
    "search.population_size": MAX_POPULATION,
    "search.generations": 10_000,  # EvoMAL runs 50; a resumed search may raise it again
    "search.tournament_size": MAX_POPULATION,  # drawn from the population: larger is meaningless
    "search.init_min_height": MAX_TREE_HEIGHT,
    "search.init_max_height": MAX_TREE_HEIGHT,
    "search.max_height": MAX_TREE_HEIGHT,
    "search.mutation_min_height": MAX_TREE_HEIGHT,
    "search.mutation_max_height": MAX_TREE_HEIGHT,  # a taller inserted subtree breaks max_height anyway
    "search.hall_of_fame_size": 1_000,  # each entry becomes a stored, exportable learned loss (EvoMAL: 10)
    "training.steps": 1_000_000,  # EvoMAL's fitness uses 500, its full meta-test training 100 000
    "training.batch_size": MAX_BATCH,
    "rejection.steps": 100_000,  # EvoMAL screens with 100 cheap steps on outputs, not on a model
    "rejection.samples": 1_000_000,  # EvoMAL: 100; a larger subset is the whole training split
    "local_search.top_k": MAX_POPULATION,  # at most the whole population is refined
    "local_search.meta_steps": 100_000,  # EvoMAL: 250
    "local_search.inner_steps": 100,  # unrolled: memory grows with every inner step (EvoMAL: 1)
    "local_search.batch_size": MAX_BATCH,
    "meta_test.steps": 1_000_000,  # EvoMAL's MNIST/CIFAR meta-test trains 100 000 steps
    "meta_test.seeds": 1_000,  # EvoMAL reports 10; a paired t-test needs no more than hundreds
    "evaluation.max_population_chunk": MAX_POPULATION,  # a chunk never holds more than the population
    "seed": SEED_RANGE[1],
}


def field_value(config: Any, dotted: str) -> Any:
    """The value of `dotted` ("search.population_size") in an ExperimentConfig."""
    value = config
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


def upper_bound_errors(config: Any) -> dict[str, str]:
    """{dotted field: message} for every field of an ExperimentConfig above its UPPER_BOUNDS entry."""
    errors = {}
    for dotted, most in UPPER_BOUNDS.items():
        value = field_value(config, dotted)
        if value is not None and value > most:
            errors[dotted] = f"must be at most {most}, got {value}"
    return errors


def work_estimate(config: Any) -> dict[str, int]:
    """The training work an ExperimentConfig asks for, at most (cache hits and rejected candidates
    only lower it).

    candidates         population_size x generations, each scored once
    models_trained     models trained to the end: one per candidate, one for the baseline's
                       fitness, one more per candidate refined under local_search "top_k", and
                       meta_test.seeds x 2 (learned loss and baseline; x 3 with local search,
                       whose learned loss is also trained with every weight at 1)
    fitness_steps      (candidates + 1 + refined under "top_k") x training.steps
    rejection_steps    candidates x rejection.steps when the screen is enabled
    local_search_steps refined x meta_steps x inner_steps; refined is every candidate under
                       "all", generations x min(top_k, population_size) under "top_k", 0 under "off"
    meta_test_steps    meta-test runs x meta_test.steps
    total_steps        the sum of the four kinds of steps
    """
    s, ls = config.search, config.local_search
    candidates = s.population_size * s.generations
    refined = {"all": candidates, "top_k": s.generations * min(ls.top_k, s.population_size)}.get(ls.mode, 0)
    fitness_runs = candidates + 1 + (refined if ls.mode == "top_k" else 0)
    meta_test_runs = config.meta_test.seeds * (3 if ls.mode != "off" else 2)
    steps = {
        "fitness_steps": fitness_runs * config.training.steps,
        "rejection_steps": candidates * config.rejection.steps if config.rejection.enabled else 0,
        "local_search_steps": refined * ls.meta_steps * ls.inner_steps,
        "meta_test_steps": meta_test_runs * config.meta_test.steps,
    }
    return {"candidates": candidates, "models_trained": fitness_runs + meta_test_runs,
            **steps, "total_steps": sum(steps.values())}
