"""Upper bounds on every size and step count of a configuration, a finite range for every real value,
and the work estimate (by hand)."""

import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from search_engine.config import ConfigError, ExperimentConfig, load_config
from search_engine.limits import (
    FLOAT_RANGES,
    MAX_LEARNING_RATE,
    UPPER_BOUNDS,
    field_value,
    step_labels,
    work_estimate,
)

ROOT = Path(__file__).resolve().parents[2]


def nested(dotted: str, value) -> dict:
    """{"search": {"population_size": value}} from "search.population_size"."""
    *parents, last = dotted.split(".")
    data: dict = {last: value}
    for key in reversed(parents):
        data = {key: data}
    return data


def fields_of_type(kind: type, cls=ExperimentConfig, prefix="") -> list[str]:
    """Every field of the configuration annotated `kind` (or an optional or tuple of it), dotted."""
    found = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            found += fields_of_type(kind, tp, f"{prefix}{f.name}.")
        elif kind in (tp, *typing.get_args(tp)):
            found.append(prefix + f.name)
    return found


def test_every_size_and_step_count_has_an_upper_bound():
    assert sorted(fields_of_type(int)) == sorted(UPPER_BOUNDS)


@pytest.mark.parametrize("dotted", sorted(UPPER_BOUNDS))
def test_a_value_above_its_bound_is_refused_by_name_and_the_bound_itself_is_not(dotted):
    most = UPPER_BOUNDS[dotted]
    listed = isinstance(field_value(ExperimentConfig(), dotted), tuple)  # lr_milestones: its largest item

    def value(number):
        return [1, number] if listed else number

    with pytest.raises(ConfigError) as caught:
        load_config(nested(dotted, value(most + 1)), check_data=False)
    assert caught.value.errors[dotted] == f"must be at most {most}, got {most + 1}"
    try:
        load_config(nested(dotted, value(most)), check_data=False)
    except ConfigError as exc:  # other fields may object to an extreme value (heights), never this one's bound
        assert "at most" not in exc.errors.get(dotted, "")


def test_a_billion_generations_and_candidates_are_refused_with_every_field_named():
    with pytest.raises(ConfigError) as caught:
        load_config({"search": {"population_size": 10**9, "generations": 10**9}}, check_data=False)
    assert "search.population_size: must be at most 10000, got 1000000000" in str(caught.value)
    assert caught.value.errors["search.generations"] == "must be at most 10000, got 1000000000"


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_the_splits_cannot_use_is_refused(seed):
    with pytest.raises(ConfigError) as caught:
        load_config({"seed": seed}, check_data=False)
    assert "seed" in caught.value.errors


# ----------------------------------------------------------------------------- real values


def test_every_real_valued_field_has_a_finite_range_that_holds_its_default():
    assert sorted(fields_of_type(float)) == sorted(FLOAT_RANGES)
    for dotted, allowed in FLOAT_RANGES.items():
        assert -1e6 < allowed.low < allowed.high < 1e6, dotted
        assert field_value(ExperimentConfig(), dotted) in allowed, dotted


@pytest.mark.parametrize("dotted", sorted(FLOAT_RANGES))
def test_a_value_past_either_end_of_its_range_is_refused_by_name_and_each_end_as_the_range_says(dotted):
    allowed = FLOAT_RANGES[dotted]
    refused = {allowed.high * 2 + 1: True, allowed.low - 1: True,
               allowed.high: allowed.high_open, allowed.low: allowed.low_open}
    for value, is_refused in refused.items():
        try:
            load_config(nested(dotted, value), check_data=False)
            errors = {}
        except ConfigError as exc:
            errors = exc.errors
        message = f"must be {allowed.describe()}, got {float(value)}"
        assert (errors.get(dotted) == message) == is_refused, (value, errors)


@pytest.mark.parametrize(("dotted", "value", "message"), [
    ("training.lr", 1e308, "must be positive and at most 100, got 1e+308"),
    ("training.lr", 0, "must be positive and at most 100, got 0.0"),
    ("training.momentum", 1.0, "must be in [0, 1), got 1.0"),
    ("training.weight_decay", 5.0, "must be in [0, 1], got 5.0"),
    ("local_search.meta_lr", 1e10, "must be positive and at most 10, got 10000000000.0"),
    ("meta_test.lr_gamma", 0.0, "must be positive and at most 1, got 0.0"),
    ("ml3.meta_lr", 11, "must be positive and at most 10, got 11.0"),
    ("taylorglo.sigma", 1e300, "must be positive and at most 1000, got 1e+300"),
    ("task.val_fraction", 1.0, "must be strictly between 0 and 1, got 1.0"),
    ("search.elitism_rate", -0.5, "must be in [0, 1], got -0.5"),
])
def test_an_out_of_range_real_value_is_named_with_its_range(dotted, value, message):
    with pytest.raises(ConfigError) as caught:
        load_config(nested(dotted, value), check_data=False)
    assert caught.value.errors[dotted] == message
    assert f"{dotted}: {message}" in str(caught.value)  # what the command line prints for a config file


def test_a_huge_learning_rate_in_a_config_file_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "huge.json"
    path.write_text('{"training": {"lr": 1e308}, "local_search": {"meta_lr": 1e308}}')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert set(caught.value.errors) == {"training.lr", "local_search.meta_lr"}


def test_every_rate_the_meta_tests_tuning_may_pick_is_a_valid_training_rate():
    from search_engine.scoring.tuned_lr import GRID_EXPONENTS, MAX_EXTENSIONS, rate  # torch

    largest = rate(max(GRID_EXPONENTS) + MAX_EXTENSIONS)
    smallest = rate(min(GRID_EXPONENTS) - MAX_EXTENSIONS)
    assert smallest in FLOAT_RANGES["training.lr"] and largest in FLOAT_RANGES["training.lr"]
    assert largest <= MAX_LEARNING_RATE


def test_the_presets_fit_within_the_bounds_and_the_default_ceiling():
    for path in sorted((ROOT / "configs").glob("*.json")):
        config = load_config(json.loads(path.read_text()), check_data=False)
        assert work_estimate(config)["total_steps"] < 2e9, path


def small(**sections) -> ExperimentConfig:
    data = {"search": {"population_size": 4, "generations": 3}, "training": {"steps": 10},
            "rejection": {"steps": 5}, "local_search": {"mode": "all", "meta_steps": 2, "inner_steps": 3, "top_k": 2},
            "meta_test": {"steps": 7, "seeds": 2}}
    for name, values in sections.items():
        data[name] = {**data[name], **values}
    return load_config(data, check_data=False)


#: What meta_test.tune_lr (on by default) adds to small()'s meta-test: the final choice's four losses
#: (3 finalists and the baseline) x at most 11 rates tried on validation data, each on 2 tuning seeds,
#: then the learned loss and the baseline on the 2 seeds again at their best rates (the meta-test
#: reuses the final choice's tuning of both), each a training of 7 steps.
TUNING_RUNS = (3 + 1) * 2 * 11 + 2 * 2
TUNING_STEPS = TUNING_RUNS * 7
ML3_TUNING_RUNS = 2 * (2 * 11 + 2)  # ML3 learns one network loss: no final choice
SEARCH_RATES = 9 * 10  # the tuned protocol's baseline at up to 9 rates x training.steps


def test_the_estimate_of_a_small_search_with_local_search_on_every_candidate():
    # 4 x 3 = 12 candidates; fitness: (12 + 1 baseline) x 10; rejection: 12 x 5; local search: 12 x 2 x 3;
    # meta-test: 2 seeds x 3 runs (learned, baseline, weights at 1) x 7, and the tuning.
    assert work_estimate(small()) == {
        "candidates": 12, "models_trained": 13 + 9 + 6 + TUNING_RUNS, "fitness_steps": 130 + SEARCH_RATES,
        "rejection_steps": 60, "local_search_steps": 72, "meta_test_steps": 42 + TUNING_STEPS,
        "total_steps": 130 + SEARCH_RATES + 60 + 72 + 42 + TUNING_STEPS,
    }
    paper = work_estimate(small(meta_test={"tune_lr": False}, training={"steps": 10, "lr_protocol": "fixed"}))
    assert (paper["models_trained"], paper["fitness_steps"], paper["meta_test_steps"]) == (13 + 6, 130, 42)


def test_the_estimate_with_top_k_refinement_trains_each_refined_candidate_again():
    # top_k 2 of each of 3 generations: 6 refined, each by 2 x 3 inner steps and one more fitness training.
    work = work_estimate(small(local_search={"mode": "top_k"}))
    assert (work["models_trained"], work["fitness_steps"], work["local_search_steps"]) == (
        19 + 9 + 6 + TUNING_RUNS, 190 + SEARCH_RATES, 36)
    assert work["total_steps"] == 190 + SEARCH_RATES + 60 + 36 + 42 + TUNING_STEPS


def test_the_estimate_without_local_search_or_screen():
    work = work_estimate(small(local_search={"mode": "off"}, rejection={"enabled": False}))
    # meta-test: 2 seeds x 2 runs (learned, baseline) x 7 steps, and the tuning
    assert work == {"candidates": 12, "models_trained": 13 + 9 + 4 + TUNING_RUNS, "fitness_steps": 130 + SEARCH_RATES,
                    "rejection_steps": 0, "local_search_steps": 0, "meta_test_steps": 28 + TUNING_STEPS,
                    "total_steps": 158 + SEARCH_RATES + TUNING_STEPS}


def test_bounds_and_estimate_need_neither_torch_nor_sympy():
    code = ("import sys; from search_engine.config import load_config; from search_engine.limits import work_estimate;"
            "print(work_estimate(load_config({}, check_data=False))['total_steps']);"
            "print('torch' in sys.modules or 'sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    # the defaults: (1250 + 1 + 9 rates of the tuned protocol) x 500 fitness + 1250 x 100 rejection
    # + 1250 x 250 local search + 5 x 3 x 2000 meta-test, the final choice's tuning (3 + 1 losses x 11
    # rates x 2 seeds x 2000, which the meta-test reuses) and 2 x 5 x 2000 more at the tuned rates
    assert out.split() == [str(630_000 + 125_000 + 312_500 + 30_000 + 176_000 + 20_000), "False"]


# ----------------------------------------------------------------------------- the estimate per method


def test_gplfl_is_estimated_as_the_evolutionary_search_without_local_search():
    # GP-LFL ignores local_search.mode ("all" here): no local search, no weights-at-1 meta-test run.
    gplfl = work_estimate(load_config({**small().to_dict(), "method": "gplfl"}, check_data=False))
    assert gplfl == work_estimate(small(local_search={"mode": "off"}))
    assert gplfl["local_search_steps"] == 0 and gplfl["meta_test_steps"] == 2 * 2 * 7 + TUNING_STEPS


def test_the_ml3_estimate_counts_its_unrolled_steps_reports_and_meta_test():
    config = load_config({**small().to_dict(), "method": "ml3",
                          "ml3": {"meta_steps": 10, "inner_steps": 3, "report_every": 4}}, check_data=False)
    # 10 meta steps x 3 unrolled inner steps; ceil(10 / 4) = 3 reports, each a fitness training of
    # 10 steps, + 1 for the baseline; no rejection screen (the search's settings are not used);
    # meta-test: 2 seeds x 2 runs (network loss, baseline) x 7 steps, and the tuning.
    assert work_estimate(config) == {
        "candidates": 3, "models_trained": 4 + 4 + ML3_TUNING_RUNS, "fitness_steps": 40, "rejection_steps": 0,
        "local_search_steps": 30, "meta_test_steps": 28 + 7 * ML3_TUNING_RUNS,
        "total_steps": 40 + 30 + 28 + 7 * ML3_TUNING_RUNS,
    }


def test_the_taylorglo_estimate_counts_one_fitness_training_per_cma_es_candidate():
    config = load_config({**small().to_dict(), "method": "taylorglo",
                          "taylorglo": {"population_size": 5, "generations": 3}}, check_data=False)
    # 5 x 3 CMA-ES candidates (+ 1 baseline) x 10 steps; the search's 4 x 3 and its local search do not count;
    # meta-test: 2 seeds x 2 runs (the fitted polynomial, the baseline) x 7 steps: its weights are its own
    # parameters, so there is no "all weights at 1" run; and the tuning.
    assert work_estimate(config) == {
        "candidates": 15, "models_trained": 16 + 9 + 4 + TUNING_RUNS, "fitness_steps": 160 + SEARCH_RATES,
        "rejection_steps": 0, "local_search_steps": 0, "meta_test_steps": 28 + TUNING_STEPS,
        "total_steps": 160 + SEARCH_RATES + 28 + TUNING_STEPS,
    }


def test_the_method_sections_are_bounded_whichever_method_is_chosen():
    with pytest.raises(ConfigError) as caught:
        load_config({"method": "evomal", "ml3": {"meta_steps": 10**9}, "taylorglo": {"generations": 10**9}},
                    check_data=False)
    assert caught.value.errors == {"ml3.meta_steps": "must be at most 100000, got 1000000000",
                                   "taylorglo.generations": "must be at most 10000, got 1000000000"}


@pytest.mark.parametrize(("method", "labels"), [
    ("evomal", ["fitness", "rejection", "local search", "meta-test"]),
    ("gplfl", ["fitness", "rejection", "local search", "meta-test"]),
    ("ml3", ["fitness", "meta-training", "meta-test"]),  # its unrolled steps are the method itself
    ("taylorglo", ["fitness", "meta-test"]),
])
def test_each_method_names_the_kinds_of_work_it_does_and_leaves_out_the_others(method, labels):
    named = step_labels(method)
    assert list(named.values()) == labels
    config = load_config({**small().to_dict(), "method": method}, check_data=False)
    work = work_estimate(config)
    assert sum(work[key] for key in named) == work["total_steps"]  # what is not named is no work
