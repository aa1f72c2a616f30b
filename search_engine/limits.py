"""How big a configuration may be, and how much work it asks for. Torch-free.

`UPPER_BOUNDS` caps every size and step count of a configuration, so a typo (10**9 generations)
is refused where it is typed instead of queueing a search that would never end; each cap is far
above what EvoMAL's own settings use (configs/*.json). `FLOAT_RANGES` gives every real-valued field
(rates, fractions, learning rates, CMA-ES's start) a finite range, so a learning rate of 1e308 is
refused by name instead of overflowing in a worker. Both are read off the facts written beside each
field (`fields.setting`, with the reason for each bound).
`work_estimate(config)` counts the training work a configuration asks for, for the new-experiment
form, the API's answer and a server's ceiling (the web's LFL_MAX_TRAINING_STEPS); it counts the
work of the configuration's method (EvoMAL, GP-LFL, ML3 or TaylorGLO) with the same keys for all.
"""

from __future__ import annotations

import math
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
from search_engine.methods.settings import effective

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


#: What each kind of step of a work estimate is called, by method, for the kinds of work the
#: method does: ML3's meta-training unrolls training steps as EvoMAL's local search does, but it
#: is the whole method, not a refinement; neither ML3 nor TaylorGLO screens its losses.
STEP_LABELS: dict[str, str] = {"fitness_steps": "fitness", "rejection_steps": "rejection",
                               "local_search_steps": "local search", "meta_test_steps": "meta-test"}
METHOD_STEP_LABELS: dict[str, dict[str, str]] = {
    "ml3": {"fitness_steps": "fitness", "local_search_steps": "meta-training", "meta_test_steps": "meta-test"},
    "taylorglo": {"fitness_steps": "fitness", "meta_test_steps": "meta-test"},
}


def step_labels(method: str) -> dict[str, str]:
    """{step key of `work_estimate`: what a page calls it} for the kinds of work `method` does
    (the others are always 0 for it)."""
    return METHOD_STEP_LABELS.get(method, STEP_LABELS)


#: Learning rates meta_test.tune_lr tries per loss at most: scoring.tuned_lr's 5 grid rates and
#: up to 3 extensions past each edge (a test checks this against that module).
TUNING_RATES_AT_MOST = 11

#: Seeds each of those rates is trained on (scoring.tuned_lr.tuning_seeds): a rate at the edge of
#: stability trains well on one seed and badly on another, which one seed cannot see.
TUNING_SEEDS = 2

#: Trainings meta_test.tune_lr runs per loss at most to pick its rate: every rate on every tuning seed.
TUNING_RUNS_AT_MOST = TUNING_SEEDS * TUNING_RATES_AT_MOST

#: Losses the final choice compares at their own best rates before the meta-test (scoring.final_choice):
#: the hall of fame's best few, and the baseline beside them.
FINALISTS = 3

#: Rates the tuned protocol (training.lr_protocol) trains the baseline at, at most, to pick the
#: search's rate: training.lr, its two half-decade neighbours and up to 3 extensions past one edge.
SEARCH_RATES_AT_MOST = 3 + 2 * 3


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
                       trained with every weight at 1); with meta_test.tune_lr, 2 x (at most
                       TUNING_RUNS_AT_MOST tuning runs + meta_test.seeds) more, and (not for ML3)
                       the final choice's (FINALISTS + 1) x TUNING_RUNS_AT_MOST
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
    counts = {"ml3": _ml3_work, "taylorglo": _taylorglo_work}.get(config.method, _evolutionary_work)(config)
    candidates, refitted, screened, unrolled, meta_test_runs = counts
    if config.meta_test.tune_lr:  # every rate tried on validation data, then the seeds again at the best
        meta_test_runs += 2 * (TUNING_RUNS_AT_MOST + config.meta_test.seeds)
        if catalog.METHODS[config.method].symbolic:  # a network loss is its run's one learned loss: nothing to choose
            meta_test_runs += (FINALISTS + 1) * TUNING_RUNS_AT_MOST
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


# Each returns (candidates, fitness trainings again after a refinement, candidates screened,
# unrolled meta-gradient steps, meta-test runs).


def _evolutionary_work(config: Any) -> tuple[int, int, int, int, int]:
    s, ls = config.search, config.local_search
    mode = effective(config).local_search.mode  # GP-LFL: off, whatever its section says
    candidates = s.population_size * s.generations
    refined = {"all": candidates, "top_k": s.generations * min(ls.top_k, s.population_size)}.get(mode, 0)
    refitted = refined if mode == "top_k" else 0
    runs_per_seed = 3 if mode != "off" else 2
    return candidates, refitted, candidates, refined * ls.meta_steps * ls.inner_steps, config.meta_test.seeds * runs_per_seed


def _ml3_work(config: Any) -> tuple[int, int, int, int, int]:
    m = config.ml3
    reports = math.ceil(m.meta_steps / m.report_every)
    return reports, 0, 0, m.meta_steps * m.inner_steps, config.meta_test.seeds * 2


def _taylorglo_work(config: Any) -> tuple[int, int, int, int, int]:
    t = config.taylorglo
    # its polynomial's weights are its own parameters: meta-tested against the baseline only
    return t.population_size * t.generations, 0, 0, 0, config.meta_test.seeds * 2
