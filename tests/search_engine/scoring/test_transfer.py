"""Transfer: a learned loss meta-tested on another dataset/model, with the source's training settings."""

import pytest

from search_engine.config import ConfigError
from search_engine.export.spec import LearnedLossSpec
from search_engine.scoring.transfer import relative_improvement, transfer, transfer_config

CROSS_ENTROPY = "mul(-1, mul(y, log(f)))"
SOURCE = {
    "task": {"dataset": "digits", "model": "logistic", "max_train": 200, "val_fraction": 0.25},
    "training": {"steps": 20, "lr": 0.05, "batch_size": 32},
    "meta_test": {"steps": 20, "seeds": 2},
    "seed": 7,
    "device": "cpu",
}


def spec(expression=CROSS_ENTROPY, kind="classification", weights=None):
    return LearnedLossSpec(expression=expression, weights=weights, kind=kind, dataset="digits", model="logistic",
                           fitness=0.1, baseline_loss="cross_entropy", baseline_fitness=0.2, metric="error rate")


def test_the_target_keeps_the_sources_training_and_meta_test_settings():
    config = transfer_config(SOURCE, dataset="digits", model="mlp")
    assert (config.task.dataset, config.task.model) == ("digits", "mlp")
    assert config.task.max_train == 200 and config.task.val_fraction == 0.25
    assert (config.training.steps, config.training.lr, config.training.batch_size) == (20, 0.05, 32)
    assert (config.meta_test.seeds, config.meta_test.steps, config.seed) == (2, 20, 7)


def test_seeds_and_steps_can_be_overridden_and_data_fields_are_not_carried_over():
    source = {**SOURCE, "task": {**SOURCE["task"], "data_root": "/somewhere/else"}}
    config = transfer_config(source, dataset="digits", model="mlp", seeds=3, steps=5)
    assert (config.meta_test.seeds, config.meta_test.steps) == (3, 5)
    assert config.task.data_root is None


@pytest.mark.parametrize(("changes", "field"), [
    ({"dataset": "imagenet", "model": "mlp"}, "task.dataset"),
    ({"dataset": "digits", "model": "transformer"}, "task.model"),
    ({"dataset": "digits", "model": "mlp", "seeds": 0}, "meta_test.seeds"),
    ({"dataset": "mnist", "model": "mlp", "data_root": "/no/such/folder"}, "task.data_root"),
])
def test_a_bad_target_is_a_config_error_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as caught:
        transfer_config(SOURCE, **changes)
    assert field in caught.value.errors


def test_a_classification_loss_does_not_transfer_to_a_regression_task():
    with pytest.raises(ValueError, match="regression dataset, but this loss was learned for classification") as caught:
        transfer_config(SOURCE, dataset="diabetes", model="mlp")
    assert list(caught.value.errors) == ["task.dataset"]
    with pytest.raises(ValueError, match="learned for regression"):
        transfer(spec("square(sub(y, f))", kind="regression"), transfer_config(SOURCE, dataset="digits", model="mlp"))


def test_the_record_compares_with_the_target_kinds_baseline_on_paired_seeds():
    config = transfer_config(SOURCE, dataset="digits", model="mlp")
    seen = []
    record = transfer(spec(), config, on_seed=seen.append)
    assert record["source"] == {"dataset": "digits", "model": "logistic"}
    assert record["target"] == {"dataset": "digits", "model": "mlp"}
    assert record["baseline_loss"] == "cross_entropy" and record["metric"] == "error rate"
    assert len(seen) == 2 and list(record["seeds"]) == seen
    # the learned loss is cross-entropy itself: on paired seeds it trains exactly like the baseline
    assert record["learned"] == record["baseline"] and record["wins"] == 0
    assert record["relative_improvement"] == 0.0
    # and at tuned rates too: the same rate is picked for both, so the same models are trained
    tuned = record["tuned_lr"]
    assert tuned["learned_lr"] == tuned["baseline_lr"] and tuned["relative_improvement"] == 0.0


def test_a_transfer_compares_at_tuned_rates_even_where_its_source_did_not():
    source = {**SOURCE, "meta_test": {**SOURCE["meta_test"], "tune_lr": False}}
    assert transfer_config(source, dataset="digits", model="mlp").meta_test.tune_lr
    assert not transfer_config(source, dataset="digits", model="mlp", tune_lr=False).meta_test.tune_lr


def test_a_transfer_is_reproducible_and_depends_on_the_loss():
    config = transfer_config(SOURCE, dataset="digits", model="mlp", seeds=1, steps=10)
    other = spec("square(sub(y, f))")
    first, again = transfer(other, config), transfer(other, config)
    assert first["learned"] == again["learned"]
    assert first["learned"] != first["baseline"]


def test_relative_improvement_of_a_record():
    assert relative_improvement({"learned_mean": 0.15, "baseline_mean": 0.2}) == pytest.approx(0.25)
    assert relative_improvement({"learned_mean": 0.3, "baseline_mean": 0.2}) == pytest.approx(-0.5)
    assert relative_improvement({"learned_mean": None, "baseline_mean": 0.2}) is None
    assert relative_improvement({"learned_mean": 0.0, "baseline_mean": 0.0}) == 0.0
    assert relative_improvement({"learned_mean": 0.1, "baseline_mean": 0.0}) is None
