"""The example plugin (plugins/lfl-example-plugin, installed by requirements-dev.txt): found through its entry
points, offered beside the built-ins, and searched, meta-tested, exported and transferred to from the CLI."""

import json

import numpy as np
import pytest
import torch

from search_engine import catalog, plugins
from search_engine.cli import main
from search_engine.config import ConfigError, load_config
from search_engine.scoring.transfer import transfer_config
from search_engine.tasks import datasets, describe, networks
from search_engine.tasks.dataspec import DatasetInfo, DatasetSpec

EXAMPLE = "lfl-example-plugin 0.1.0"
CROSS_ENTROPY = "mul(-1, mul(y, log(f)))"

#: A search of a few seconds on the plugin's data set and model (population 4, two generations, 30 steps).
TINY = {"task": {"dataset": "breast_cancer", "model": "grid_cnn"},
        "search": {"population_size": 4, "generations": 2, "hall_of_fame_size": 3},
        "training": {"steps": 30, "batch_size": 64, "lr": 0.05},
        "rejection": {"steps": 20, "samples": 60}, "local_search": {"mode": "off"},
        "meta_test": {"steps": 30, "seeds": 2}, "seed": 1, "device": "cpu"}


def test_the_example_plugin_is_found_with_its_package_and_listed_beside_the_built_ins():
    data, model = catalog.plugin_dataset("breast_cancer"), catalog.plugin_model("grid_cnn")
    assert data.origin == plugins.Origin("lfl.datasets", "breast_cancer", "lfl_example_plugin.facts:BREAST_CANCER",
                                         EXAMPLE)
    assert model.origin.group == "lfl.models" and model.origin.package == EXAMPLE
    assert not [e for e in catalog.plugin_errors() if e.origin.package == EXAMPLE]
    assert catalog.dataset_names()[:len(catalog.DATASET_NAMES)] == catalog.DATASET_NAMES  # built-ins first
    assert catalog.datasets()["breast_cancer"] == catalog.Dataset(
        "breast_cancer", "breast_cancer (3×10 grid, plugin)", "plugin", "classification")
    assert catalog.models()["grid_cnn"].min_image_side == 2 and "grid_cnn" in catalog.model_names()
    assert catalog.dataset_kind("breast_cancer", "regression") == "classification"  # its facts say, not the config
    assert catalog.data_facts("breast_cancer") == catalog.DataFacts((1, 3, 10), 2, (212, 357), 569)


def test_its_data_loads_as_its_facts_say_split_stratified_and_scaled_per_feature():
    spec = DatasetSpec("breast_cancer")
    splits = datasets.load_dataset(spec, seed=0)
    assert splits.info == describe.check_dataset(spec, 0) == datasets.check_dataset(spec, 0)
    assert splits.x_train.shape[1:] == (1, 3, 10) and len(splits.y_train) + len(splits.y_val) + len(splits.y_test) == 569
    # each of the thirty values standardized on its own (areas near 1000 and smoothness near 0.1 alike)
    assert torch.allclose(splits.x_train.mean(0), torch.zeros(1, 3, 10), atol=1e-4)
    assert torch.allclose(splits.x_train.std(0, correction=0), torch.ones(1, 3, 10), atol=1e-3)
    shares = [np.bincount(s.numpy()) / len(s) for s in (splits.y_train, splits.y_test)]
    assert abs(shares[0][0] - 212 / 569) < 0.01 and abs(shares[1][0] - 212 / 569) < 0.02


def test_its_model_is_built_from_a_seed_and_trained_as_a_batched_chain():
    from search_engine.population.networks import chain_obstacle

    info = DatasetInfo("breast_cancer", "classification", (1, 3, 10), 2)
    a, b, c = (networks.build_model("grid_cnn", info, seed) for seed in (5, 5, 6))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    assert a(torch.zeros(3, 1, 3, 10)).shape == (3, 2) and chain_obstacle(a) is None
    networks.check_model_fits("grid_cnn", DatasetInfo("digits", "classification", (1, 8, 8), 10))


@pytest.mark.parametrize(("task", "field", "message"), [
    ({"dataset": "diabetes", "model": "grid_cnn"}, "task.model",
     "grid_cnn needs image input of at least 2x2 with shape (C, H, W); dataset 'diabetes' gives (10,)"),
    ({"dataset": "breast_cancer", "model": "lenet5"}, "task.model",
     "lenet5 needs image input of at least 12x12 with shape (C, H, W); dataset 'breast_cancer' gives (1, 3, 10)"),
    ({"dataset": "breast_cancer", "model": "gpt"}, "task.model", "gpt'; known: logistic, mlp, lenet5, "),
    ({"dataset": "imagenet"}, "task.dataset", "svhn, breast_cancer"),
    ({"dataset": "breast_cancer", "val_fraction": 0.001}, "task.val_fraction", "fewer than the 2 classes"),
])
def test_a_configuration_the_plugin_cannot_serve_is_refused_at_its_field(task, field, message):
    with pytest.raises(ConfigError) as caught:
        load_config({"task": task})
    assert list(caught.value.errors) == [field] and message in caught.value.errors[field]


def test_the_flat_built_in_models_take_its_data():
    for model in ("logistic", "mlp"):
        assert load_config({"task": {"dataset": "breast_cancer", "model": model}}).task.model == model


def test_a_tiny_search_on_it_runs_from_the_cli_and_its_loss_exports_and_meta_tests(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY))
    assert main(["search", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    result_path = tmp_path / "run" / "result.json"
    result = json.loads(result_path.read_text())
    assert result["status"] == "completed" and len(result["history"]) == 2 and result["best"]["fitness"] < 0.5
    assert result["plan"]["strategy"] == "batched" and result["plan"]["reason"] == "rule: chain model on cpu, chunks of 25"
    assert main(["export", "--result", str(result_path), "--format", "torch", "--out", str(tmp_path / "loss.py")]) == 0
    assert "breast_cancer" in (tmp_path / "loss.py").read_text()
    assert main(["evaluate", "--result", str(result_path), "--rank", "1", "--seeds", "2", "--steps", "20",
                 "--no-tune-lr"]) == 0
    record = json.loads(result_path.read_text())["meta_test"]
    assert record["rank"] == 1 and len(record["seeds"]) == 2 and record["expression"] == result["best"]["expression"]
    assert all(0.0 <= value <= 1.0 for value in record["learned"] + record["baseline"])


def test_a_learned_loss_transfers_to_the_plugins_task(tmp_path, capsys):
    result_path = tmp_path / "result.json"
    result_path.write_text(json.dumps({
        "format": "lfl-search-result", "baseline_loss": "cross_entropy", "baseline_fitness": 0.2,
        "config": {"task": {"dataset": "digits", "model": "logistic"}, "training": {"steps": 10}, "device": "cpu"},
        "hall_of_fame": [{"expression": CROSS_ENTROPY, "fitness": 0.1, "weights": None}],
    }))
    args = ["evaluate", "--result", str(result_path), "--dataset", "breast_cancer", "--model", "grid_cnn",
            "--seeds", "1", "--steps", "10"]
    assert main(args) == 0
    assert "on breast_cancer/grid_cnn: 1 seeds x 10 steps" in capsys.readouterr().out
    (record,) = json.loads(result_path.read_text())["transfers"]
    assert record["target"] == {"dataset": "breast_cancer", "model": "grid_cnn"} and len(record["learned"]) == 1
    assert record["source"] == {"dataset": "digits", "model": "logistic"} and "tuned_lr" in record


def test_a_transfer_to_it_keeps_the_kind_rule():
    target = transfer_config({"task": {"dataset": "digits"}}, dataset="breast_cancer", model="mlp", check_data=False)
    assert target.task.dataset == "breast_cancer" and target.task.kind is None
    with pytest.raises(ConfigError) as caught:
        transfer_config({"task": {"dataset": "diabetes"}}, dataset="breast_cancer", model="mlp")
    assert "'breast_cancer' is a classification dataset, but this loss was learned for regression" in str(caught.value)


def test_the_cli_lists_it_and_checks_it_for_real(capsys):
    assert main(["plugins", "--check"]) in (0, 1)  # 1 only if some other installed plugin failed
    out = capsys.readouterr().out
    assert "breast_cancer: breast_cancer (3×10 grid, plugin); classification, 569 samples of shape (1, 3, 10)" in out
    assert "grid_cnn: grid_cnn (small CNN, plugin); every kind of task, images of at least 2x2" in out
    assert "ok      data set breast_cancer: 569 samples of shape (1, 3, 10), as its facts say" in out
    assert "ok      model grid_cnn on breast_cancer" in out and "ok      model grid_cnn on cifar100" in out
    assert "model grid_cnn on diabetes" not in out  # its facts rule flat data out: nothing to try
