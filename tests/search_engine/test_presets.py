"""The presets in configs/ against a table of the reference implementation's settings.

REFERENCE holds, per preset, the values of the EvoMAL reference implementation's configuration
for that dataset (experiments/resources/configurations/<dataset>_config.yaml of
Decadz/Evolved-Model-Agnostic-Loss), under lfl's field names:

  population_size, num_generations, crossover/mutation/elitism rate, tournament_size, heights
      -> search.*
  meta_gradient_steps, meta_learning_rate, inner_gradient_steps -> local_search.*
  base_gradient_steps / learning_rate / momentum / nesterov / weight_decay / batch_size -> training.*
  filter_gradient_steps, filter_sample_size -> rejection.steps, rejection.samples
  testing_gradient_steps, testing_milestones, testing_gamma -> meta_test.*
  (the reference meta-tests with the base optimizer's settings, as lfl does)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search_engine.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

_SEARCH = {
    "search.population_size": 25, "search.generations": 50, "search.crossover_rate": 0.7,
    "search.mutation_rate": 0.25, "search.elitism_rate": 0.05, "search.tournament_size": 4,
    "search.max_height": 10, "search.init_min_height": 2, "search.init_max_height": 4,
    "local_search.mode": "all", "local_search.meta_steps": 250, "local_search.meta_lr": 0.001,
    "local_search.inner_steps": 1, "training.steps": 500, "training.lr": 0.01, "training.batch_size": 128,
    "rejection.samples": 100,
}

REFERENCE = {
    "mnist_lenet5": {  # mnist_config.yaml: plain SGD, 10,000 meta-test steps
        **_SEARCH, "task.dataset": "mnist", "task.model": "lenet5",
        "training.momentum": 0.0, "training.nesterov": False, "training.weight_decay": 0.0,
        "rejection.steps": 100, "meta_test.steps": 10000, "meta_test.lr_milestones": [],
    },
    "cifar10_allcnnc": {  # cifar10_config.yaml: Nesterov momentum, a step schedule in meta-testing
        **_SEARCH, "task.dataset": "cifar10", "task.model": "allcnnc",
        "training.momentum": 0.9, "training.nesterov": True, "training.weight_decay": 0.0005,
        "rejection.steps": 1000, "meta_test.steps": 150000, "meta_test.lr_milestones": [100000, 135000],
        "meta_test.lr_gamma": 0.1,
    },
    "diabetes_mlp": {  # diabetes_config.yaml: regression, squared error as the baseline
        **_SEARCH, "task.dataset": "diabetes", "task.model": "mlp",
        "training.momentum": 0.9, "training.nesterov": True, "training.weight_decay": 0.0005,
        "rejection.steps": 1000, "meta_test.steps": 10000, "meta_test.lr_milestones": [],
    },
}

# Small presets for trying lfl out: not claimed to follow the reference.
SMALL = {"quick", "ml3_digits", "taylorglo_digits", "random_digits"}


def _value(config: dict, dotted: str):
    section, _, name = dotted.partition(".")
    return config[section][name]


@pytest.mark.parametrize("preset", sorted(REFERENCE))
def test_each_reference_preset_says_what_the_reference_uses(preset):
    config = load_config(CONFIGS / f"{preset}.json", check_data=False).to_dict()
    differ = {k: (_value(config, k), want) for k, want in REFERENCE[preset].items() if _value(config, k) != want}
    assert not differ, f"{preset}.json differs from the reference (got, reference): {differ}"


def test_every_preset_is_either_in_the_table_or_a_small_one():
    presets = {p.stem for p in CONFIGS.glob("*.json")}
    assert presets - set(REFERENCE) <= SMALL, f"presets without a reference row: {presets - set(REFERENCE) - SMALL}"
    assert set(REFERENCE) <= presets


def test_every_preset_loads():
    for path in CONFIGS.glob("*.json"):
        load_config(path, check_data=False)
        assert isinstance(json.loads(path.read_text()), dict)
