"""How big a configuration may be, and how much work it asks for. Torch-free.

`UPPER_BOUNDS` caps every size and step count of a configuration, so a typo (10**9 generations)
is refused where it is typed instead of queueing a search that would never end; each cap is far
above what EvoMAL's own settings use (configs/*.json). `FLOAT_RANGES` gives every real-valued field
(rates, fractions, learning rates, CMA-ES's start) a finite range, so a learning rate of 1e308 is
refused by name instead of overflowing in a worker. Both are read off the facts written beside each
field (`fields.setting`, with the reason for each bound).
`work_estimate(config)` counts the training work a configuration asks for, for the new-experiment
form, the API's answer and a server's ceiling (the web's LFL_MAX_TRAINING_STEPS); it counts the
work of the configuration's method (its strategy object's `planned_work`) with the same keys for all.
"""

from __future__ import annotations

from typing import Any

from search_engine import catalog
from search_engine.fields import (  # noqa: F401 (the bounds' names, read here by their users)
    MAX_BATCH,
    MAX_LEARNING_RATE,
    MAX_META_LEARNING_RATE,
    MAX_POPULATION,
    MAX_TREE_HEIGHT,
    PROBABILITY,
    SEED_RANGE,
    SHARE_OF_DATA,
    FloatRange,
    leaves,
    setting_of,
    value_at,
)
from search_engine.scoring.run_counts import (  # noqa: F401 (read from here by their users)
    FINALISTS,
    SEARCH_RATES_AT_MOST,
    TUNING_RATES_AT_MOST,
    TUNING_RUNS_AT_MOST,
    TUNING_SEEDS,
)
from search_engine.study.method import STEP_LABELS, method_named  # noqa: F401 (STEP_LABELS: read from here)

field_value = value_at  # the value of a dotted field in a configuration

def _bounds() -> tuple[dict[str, int], dict[str, FloatRange]]:
    """(every integer field's largest value, every real field's range), read off the configuration."""
    from search_engine.config import ExperimentConfig

    most, ranges = {}, {}
    for dotted, f, _ in leaves(ExperimentConfig):
        s = setting_of(f)
        if s.at_most is not None:
            most[dotted] = s.at_most
        if s.range is not None:
            ranges[dotted] = s.range
    return most, ranges


#: Dotted field -> the largest value it may take (a list of numbers: its largest item); each field's
#: bound and the reason for it sit beside the field (`fields.setting`).
UPPER_BOUNDS: dict[str, int]
#: Dotted field -> the values it may take (every float field of the configuration; a test checks).
FLOAT_RANGES: dict[str, FloatRange]
UPPER_BOUNDS, FLOAT_RANGES = _bounds()


def step_labels(method: str) -> dict[str, str]:
    """{step key of `work_estimate`: what a page calls it} for the kinds of work `method` does
    (the others are always 0 for it): the method's strategy object says."""
    return method_named(method).step_labels()


def work_estimate(config: Any) -> dict[str, int]:
    """The training work an ExperimentConfig asks for, at most (cache hits and rejected candidates
    only lower it), as its method runs it. The keys are the same for every method:

    candidates         losses scored by a fitness training: population_size x generations for
                       EvoMAL / GP-LFL (search) and TaylorGLO (taylorglo); for ML3 the reports,
                       ceil(ml3.meta_steps / ml3.report_every), each scoring the loss network so far
    models_trained     models trained to the end: one per candidate, one for the baseline's
                       fitness, one more per candidate refined under local_search "top_k", and
                       the meta-test's runs: meta_test.seeds x 2 (learned loss and baseline; x 3
                       where local search refined the learned loss's weights, as it is also
                       trained with every weight at 1); with meta_test.tune_lr, the final
                       choice's (FINALISTS + 1) x TUNING_RUNS_AT_MOST (at most) and 2 x
                       meta_test.seeds at the tuned rates (the meta-test reuses the final
                       choice's tuning of the chosen loss and the baseline); for ML3, which has
                       no final choice, 2 x (TUNING_RUNS_AT_MOST + meta_test.seeds)
    fitness_steps      (candidates + 1 + refined under "top_k") x training.steps, plus the tuned
                       protocol's choice of rate (at most SEARCH_RATES_AT_MOST baseline trainings;
                       not for ML3, which scores its snapshots at training.lr)
    rejection_steps    candidates x rejection.steps when the screen is enabled (EvoMAL, GP-LFL)
    local_search_steps unrolled training steps of a meta-gradient: refined x local_search.meta_steps
                       x inner_steps, where refined is every candidate under "all", generations x
                       min(top_k, population_size) under "top_k", 0 under "off" and for GP-LFL;
                       for ML3 its meta-training, ml3.meta_steps x ml3.inner_steps
    meta_test_steps    meta-test runs x meta_test.steps
    total_steps        the sum of the four kinds of steps
    """
    candidates, refitted, screened, unrolled, meta_test_runs = method_named(config.method).planned_work(config)
    if config.meta_test.tune_lr:  # every rate tried on validation data, then the seeds again at the best
        meta_test_runs += 2 * config.meta_test.seeds
        if catalog.METHODS[config.method].symbolic:  # the final choice tunes the rates the meta-test reuses
            meta_test_runs += (FINALISTS + 1) * TUNING_RUNS_AT_MOST
        else:  # a network loss is its run's one learned loss: nothing to choose, its rates tuned in the meta-test
            meta_test_runs += 2 * TUNING_RUNS_AT_MOST
    fitness_runs = candidates + 1 + refitted
    if config.training.lr_protocol == "tuned" and catalog.METHODS[config.method].lr_protocol:
        fitness_runs += SEARCH_RATES_AT_MOST
    steps = {
        "fitness_steps": fitness_runs * config.training.steps,
        "rejection_steps": screened * config.rejection.steps if config.rejection.enabled else 0,
        "local_search_steps": unrolled,
        "meta_test_steps": meta_test_runs * config.meta_test.steps,
    }
    return {"candidates": candidates, "models_trained": fitness_runs + meta_test_runs,
            **steps, "total_steps": sum(steps.values())}
