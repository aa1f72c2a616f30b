import json
from pathlib import Path

import pytest

from search_engine.config import ConfigError, ExperimentConfig, load_config


def errors_of(data, **kw):
    with pytest.raises(ConfigError) as info:
        load_config(data, **kw)
    return info.value.errors


def test_defaults_follow_evomal():
    c = load_config({})
    assert (c.search.population_size, c.search.generations) == (25, 50)
    assert (c.search.crossover_rate, c.search.mutation_rate, c.search.tournament_size) == (0.7, 0.25, 4)
    assert (c.training.steps, c.training.batch_size, c.training.lr) == (500, 128, 0.01)
    assert (c.rejection.steps, c.rejection.samples) == (100, 100)
    assert c.search.max_height == 10 and c.search.seed_known_losses


def test_round_trip_through_json(tmp_path):
    c = load_config({"search": {"population_size": 7}, "training": {"momentum": 0.9, "nesterov": True}})
    path = tmp_path / "c.json"
    path.write_text(c.to_json())
    assert load_config(path) == c
    assert isinstance(load_config(path), ExperimentConfig)


@pytest.mark.parametrize(
    "data, field, words",
    [
        ({"search": {"population_size": -3}}, "search.population_size", "at least 2"),
        ({"search": {"generations": 0}}, "search.generations", "at least 1"),
        ({"search": {"crossover_rate": 1.5}}, "search.crossover_rate", "[0, 1]"),
        ({"search": {"mutation_rate": -0.1}}, "search.mutation_rate", "[0, 1]"),
        ({"search": {"crossover_rate": 0.8, "mutation_rate": 0.3}}, "search.mutation_rate", "at most 1"),
        ({"search": {"populaton_size": 5}}, "search.populaton_size", "did you mean 'population_size'"),
        ({"search": {"population_size": "many"}}, "search.population_size", "integer"),
        ({"search": {"population_size": 2.5}}, "search.population_size", "integer"),
        ({"search": {"seed_known_losses": "yes"}}, "search.seed_known_losses", "true or false"),
        ({"training": {"lr": 0}}, "training.lr", "positive"),
        ({"training": {"nesterov": True}}, "training.nesterov", "momentum"),
        ({"training": "fast"}, "training", "object"),
        ({"task": {"val_fraction": 1.2}}, "task.val_fraction", "between 0 and 1"),
        ({"device": "tpu"}, "device", "cuda"),
        ({"bogus": 1}, "bogus", "unknown field"),
    ],
)
def test_bad_values_name_the_field(data, field, words):
    errors = errors_of(data, check_data=False)
    assert field in errors, errors
    assert words in errors[field]


def test_every_problem_is_reported_at_once():
    errors = errors_of({"search": {"population_size": "x", "generations": "y"}}, check_data=False)
    assert set(errors) == {"search.population_size", "search.generations"}


def test_unknown_dataset_and_model():
    assert "known:" in errors_of({"task": {"dataset": "imagenet"}})["task.dataset"]
    assert "known:" in errors_of({"task": {"model": "transformer"}})["task.model"]


def test_model_that_does_not_fit_the_data():
    errors = errors_of({"task": {"dataset": "diabetes", "model": "lenet5"}})
    assert "lenet5" in errors["task.model"]


def test_missing_data_root(tmp_path):
    errors = errors_of({"task": {"dataset": "mnist", "model": "lenet5", "data_root": str(tmp_path / "nope")}})
    assert str(tmp_path / "nope") in errors["task.data_root"]


def test_invalid_json_text_and_missing_file(tmp_path):
    assert "invalid JSON" in errors_of("{not json")["config"]
    assert "cannot read" in errors_of(tmp_path / "missing.json")["config"]


def test_presets_are_valid():
    presets = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.json"))
    assert presets, "configs/ holds the presets"
    for path in presets:
        data = json.loads(path.read_text())
        load_config(data, check_data=data.get("task", {}).get("dataset") in (None, "digits", "digits28", "diabetes"))
