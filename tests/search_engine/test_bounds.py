"""Upper bounds on every size and step count of a configuration, and the work estimate (by hand)."""

import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from search_engine.config import ConfigError, ExperimentConfig, load_config
from search_engine.limits import UPPER_BOUNDS, field_value, step_labels, work_estimate

ROOT = Path(__file__).resolve().parents[2]


def nested(dotted: str, value) -> dict:
    """{"search": {"population_size": value}} from "search.population_size"."""
    *parents, last = dotted.split(".")
    data: dict = {last: value}
    for key in reversed(parents):
        data = {key: data}
    return data


def integer_fields(cls=ExperimentConfig, prefix="") -> list[str]:
    """Every int (or optional int) field of the configuration, dotted."""
    found = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            found += integer_fields(tp, f"{prefix}{f.name}.")
        elif int in (tp, *typing.get_args(tp)):
            found.append(prefix + f.name)
    return found


def test_every_size_and_step_count_has_an_upper_bound():
    assert sorted(integer_fields()) == sorted(UPPER_BOUNDS)


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


def test_the_estimate_of_a_small_search_with_local_search_on_every_candidate():
    # 4 x 3 = 12 candidates; fitness: (12 + 1 baseline) x 10; rejection: 12 x 5; local search: 12 x 2 x 3;
    # meta-test: 2 seeds x 3 runs (learned, baseline, weights at 1) x 7.
    assert work_estimate(small()) == {
        "candidates": 12, "models_trained": 13 + 6, "fitness_steps": 130, "rejection_steps": 60,
        "local_search_steps": 72, "meta_test_steps": 42, "total_steps": 130 + 60 + 72 + 42,
    }


def test_the_estimate_with_top_k_refinement_trains_each_refined_candidate_again():
    # top_k 2 of each of 3 generations: 6 refined, each by 2 x 3 inner steps and one more fitness training.
    work = work_estimate(small(local_search={"mode": "top_k"}))
    assert (work["models_trained"], work["fitness_steps"], work["local_search_steps"]) == (19 + 6, 190, 36)
    assert work["total_steps"] == 190 + 60 + 36 + 42


def test_the_estimate_without_local_search_or_screen():
    work = work_estimate(small(local_search={"mode": "off"}, rejection={"enabled": False}))
    # meta-test: 2 seeds x 2 runs (learned, baseline) x 7 steps
    assert work == {"candidates": 12, "models_trained": 13 + 4, "fitness_steps": 130, "rejection_steps": 0,
                    "local_search_steps": 0, "meta_test_steps": 28, "total_steps": 158}


def test_bounds_and_estimate_need_neither_torch_nor_sympy():
    code = ("import sys; from search_engine.config import load_config; from search_engine.limits import work_estimate;"
            "print(work_estimate(load_config({}, check_data=False))['total_steps']);"
            "print('torch' in sys.modules or 'sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    # the defaults: (1250 + 1) x 500 fitness + 1250 x 100 rejection + 1250 x 250 local search + 5 x 3 x 2000
    assert out.split() == [str(625_500 + 125_000 + 312_500 + 30_000), "False"]


# ----------------------------------------------------------------------------- the estimate per method


def test_gplfl_is_estimated_as_the_evolutionary_search_without_local_search():
    # GP-LFL ignores local_search.mode ("all" here): no local search, no weights-at-1 meta-test run.
    gplfl = work_estimate(load_config({**small().to_dict(), "method": "gplfl"}, check_data=False))
    assert gplfl == work_estimate(small(local_search={"mode": "off"}))
    assert gplfl["local_search_steps"] == 0 and gplfl["meta_test_steps"] == 2 * 2 * 7


def test_the_ml3_estimate_counts_its_unrolled_steps_reports_and_meta_test():
    config = load_config({**small().to_dict(), "method": "ml3",
                          "ml3": {"meta_steps": 10, "inner_steps": 3, "report_every": 4}}, check_data=False)
    # 10 meta steps x 3 unrolled inner steps; ceil(10 / 4) = 3 reports, each a fitness training of
    # 10 steps, + 1 for the baseline; no rejection screen (the search's settings are not used);
    # meta-test: 2 seeds x 2 runs (network loss, baseline) x 7 steps.
    assert work_estimate(config) == {
        "candidates": 3, "models_trained": 4 + 4, "fitness_steps": 40, "rejection_steps": 0,
        "local_search_steps": 30, "meta_test_steps": 28, "total_steps": 40 + 30 + 28,
    }


def test_the_taylorglo_estimate_counts_one_fitness_training_per_cma_es_candidate():
    config = load_config({**small().to_dict(), "method": "taylorglo",
                          "taylorglo": {"population_size": 5, "generations": 3}}, check_data=False)
    # 5 x 3 CMA-ES candidates (+ 1 baseline) x 10 steps; the search's 4 x 3 and its local search do not count;
    # meta-test: 2 seeds x 2 runs (the fitted polynomial, the baseline) x 7 steps: its weights are its own
    # parameters, so there is no "all weights at 1" run.
    assert work_estimate(config) == {
        "candidates": 15, "models_trained": 16 + 4, "fitness_steps": 160, "rejection_steps": 0,
        "local_search_steps": 0, "meta_test_steps": 28, "total_steps": 160 + 28,
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
