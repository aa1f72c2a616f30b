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


# ----------------------------------------------------------------------------- data checked at validation


def csv_task(tmp_path, labels, kind="classification", **task) -> dict:
    path = tmp_path / f"data{len(list(tmp_path.iterdir()))}.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{label}\n" for i, label in enumerate(labels)))
    return {"task": {"dataset": "csv", "model": "mlp", "data_file": str(path), "kind": kind, **task}}


@pytest.mark.parametrize("kind, labels", [("classification", ["yes"]), ("regression", [0.5, 1.5, 2.5])])
def test_too_few_rows_are_refused_at_the_data_file(tmp_path, kind, labels):
    errors = errors_of(csv_task(tmp_path, labels, kind))
    assert f"has {len(labels)} sample(s)" in errors["task.data_file"] and "at least 4" in errors["task.data_file"]


def test_classification_needs_two_classes_with_three_samples_each(tmp_path):
    assert "at least 2 classes" in errors_of(csv_task(tmp_path, ["a"] * 9))["task.data_file"]
    message = errors_of(csv_task(tmp_path, ["a", "b"] * 4 + ["c"]))["task.data_file"]
    assert "class 'c' has 1 sample(s), every class needs at least 3" in message


def test_a_split_too_small_for_every_class_names_its_fraction(tmp_path):
    errors = errors_of(csv_task(tmp_path, ["a", "b", "c"] * 3))  # test: ceil(0.2 x 9) = 2 < 3 classes
    assert errors == {"task.test_fraction": "the test split (test_fraction 0.2) would hold 2 of the 9 samples, "
                                            "fewer than the 3 classes it must each contain; raise test_fraction or "
                                            "add data"}
    assert "task.val_fraction" in errors_of({"task": {"val_fraction": 0.001}})  # 2 digits for 10 classes
    assert "task.val_fraction" in errors_of(csv_task(tmp_path, ["a", "b"] * 20, val_fraction=0.78))  # leaves 0 to train


def test_validation_accepts_exactly_what_the_worker_can_split(tmp_path):
    """Every small file either is refused at validation or splits: the worker never finds out first."""
    from search_engine.config import dataset_spec
    from search_engine.tasks.datasets import load_dataset

    for n in range(1, 16):
        for classes in (1, 2, 3):
            for fractions in ({}, {"val_fraction": 0.1, "test_fraction": 0.5}, {"test_fraction": 0.05}):
                data = csv_task(tmp_path, [i % classes for i in range(n)], **fractions)
                try:
                    config = load_config(data)
                except ConfigError as exc:
                    assert set(exc.errors) <= {"task.data_file", "task.val_fraction", "task.test_fraction"}
                    continue
                splits = load_dataset(dataset_spec(config.task), config.seed)
                assert len(splits.y_train) >= 2 and len(splits.y_val) and len(splits.y_test)
