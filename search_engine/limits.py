"""How big a configuration may be, and how much work it asks for. Torch-free.

`UPPER_BOUNDS` caps every size and step count of a configuration, so a typo (10**9 generations)
is refused where it is typed instead of queueing a search that would never end; each cap is far
above what EvoMAL's own settings use (configs/*.json) and says why it is where it is.
`FLOAT_RANGES` gives every real-valued field (rates, fractions, learning rates, CMA-ES's start) a
finite range, so a learning rate of 1e308 is refused by name instead of overflowing in a worker.
`work_estimate(config)` counts the training work a configuration asks for, for the new-experiment
form, the API's answer and a server's ceiling (the web's LFL_MAX_TRAINING_STEPS); it counts the
work of the configuration's method (EvoMAL, GP-LFL, ML3 or TaylorGLO) with the same keys for all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from search_engine import catalog
from search_engine.methods.settings import TAYLORGLO_MAX_START, effective

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
    "meta_test.lr_milestones": 1_000_000,  # step numbers of the meta-test's schedule: at most meta_test.steps
    "meta_test.seeds": 1_000,  # EvoMAL reports 10; a paired t-test needs no more than hundreds
    "evaluation.max_population_chunk": MAX_POPULATION,  # a chunk never holds more than the population
    "evaluation.threads": 256,  # beyond any CPU a worker has; more threads than cores only slow it down
    "ml3.meta_steps": 100_000,  # as local_search.meta_steps (the reference: 250)
    "ml3.inner_steps": 100,  # unrolled, as local_search.inner_steps (the reference: 1)
    "ml3.hidden_units": 4_096,  # the loss network sees two numbers per class; the reference uses 50
    "ml3.hidden_layers": 32,  # the reference uses 2; deeper only slows the unrolled meta-gradient
    "ml3.batch_size": MAX_BATCH,
    "ml3.report_every": 100_000,  # at most every meta step reported, at least one report per run
    "taylorglo.population_size": MAX_POPULATION,  # CMA-ES lambda (TaylorGLO: 20; the 4 + 3 ln n rule: 10)
    "taylorglo.generations": 10_000,  # as search.generations
    "seed": SEED_RANGE[1],
}


#: SGD's learning rate (training.lr): above the largest rate a meta-test's tuning tries
#: (10 ** 1.5, scoring.tuned_lr), so a tuned rate can be set again; a loss that shrinks its
#: gradients may want such rates, but far larger ones only overflow the weights.
MAX_LEARNING_RATE = 100.0
#: Adam's learning rate (local_search.meta_lr, ml3.meta_lr): Adam moves each weight by about this
#: much per step whatever the gradient's size; EvoMAL and ML3 use 1e-3 on weights near 1.
MAX_META_LEARNING_RATE = 10.0


@dataclass(frozen=True)
class FloatRange:
    """The values a real-valued field may take: `low` to `high`, each end included unless open."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        """The range in the words of an error message: "in [0, 1]", "positive and at most 100"."""
        if self.low == 0 and self.low_open and not self.high_open:
            return f"positive and at most {self.high:g}"
        if self.low_open and self.high_open:
            return f"strictly between {self.low:g} and {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


PROBABILITY = FloatRange(0.0, 1.0)
SHARE_OF_DATA = FloatRange(0.0, 1.0, low_open=True, high_open=True)  # some held out, some left to train on

#: Dotted field -> the values it may take (every float field of the configuration; a test checks).
FLOAT_RANGES: dict[str, FloatRange] = {
    "task.val_fraction": SHARE_OF_DATA,
    "task.test_fraction": SHARE_OF_DATA,
    "search.crossover_rate": PROBABILITY,
    "search.mutation_rate": PROBABILITY,
    "search.elitism_rate": PROBABILITY,  # a share of the population
    "training.lr": FloatRange(0.0, MAX_LEARNING_RATE, low_open=True),
    "training.momentum": FloatRange(0.0, 1.0, high_open=True),  # at 1 the velocity never decays
    # SGD shrinks every weight by lr x weight_decay a step: EvoMAL's CIFAR setting is 5e-4, and at 1
    # the decay outweighs any loss.
    "training.weight_decay": FloatRange(0.0, 1.0),
    "local_search.meta_lr": FloatRange(0.0, MAX_META_LEARNING_RATE, low_open=True),
    "meta_test.lr_gamma": FloatRange(0.0, 1.0, low_open=True),  # a decay: 1 keeps the rate, 0 stops training
    "ml3.meta_lr": FloatRange(0.0, MAX_META_LEARNING_RATE, low_open=True),
    # CMA-ES's start (methods.settings): further out every sampled polynomial diverges in training.
    "taylorglo.sigma": FloatRange(0.0, TAYLORGLO_MAX_START, low_open=True),
    "taylorglo.mean": FloatRange(-TAYLORGLO_MAX_START, TAYLORGLO_MAX_START),
}


def float_range_errors(config: Any) -> dict[str, str]:
    """{dotted field: message} for every float field of an ExperimentConfig outside its FLOAT_RANGES
    entry, e.g. {"training.lr": "must be positive and at most 100, got 1e+308"}."""
    errors = {}
    for dotted, allowed in FLOAT_RANGES.items():
        value = field_value(config, dotted)
        if value not in allowed:
            errors[dotted] = f"must be {allowed.describe()}, got {value}"
    return errors


def field_value(config: Any, dotted: str) -> Any:
    """The value of `dotted` ("search.population_size") in an ExperimentConfig."""
    value = config
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


def upper_bound_errors(config: Any) -> dict[str, str]:
    """{dotted field: message} for every field of an ExperimentConfig above its UPPER_BOUNDS entry
    (a list of numbers, such as lr_milestones: its largest item)."""
    errors = {}
    for dotted, most in UPPER_BOUNDS.items():
        value = field_value(config, dotted)
        if isinstance(value, tuple):
            value = max(value, default=None)
        if value is not None and value > most:
            errors[dotted] = f"must be at most {most}, got {value}"
    return errors


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
