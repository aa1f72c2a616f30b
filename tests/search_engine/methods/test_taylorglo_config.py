"""The taylorglo configuration section: its defaults, and errors that name its fields."""

from __future__ import annotations

import pytest

from search_engine.config import ConfigError, load_config
from search_engine.methods.settings import TaylorGLOSettings


def errors_of(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_config(data, check_data=False)
    return caught.value.errors


def test_defaults_follow_the_reference_runner():
    t = load_config({"method": "taylorglo"}, check_data=False).taylorglo
    assert t == TaylorGLOSettings(population_size=25, generations=50, sigma=1.2, mean=0.0)


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"population_size": 3}, "taylorglo.population_size", "at least 4"),
    ({"generations": 0}, "taylorglo.generations", "at least 1"),
    ({"sigma": 0.0}, "taylorglo.sigma", "positive"),
    ({"sigma": 5000.0}, "taylorglo.sigma", "at most 1000"),
    ({"mean": -1e4}, "taylorglo.mean", "in [-1000, 1000], got -10000.0"),
    ({"sigma": "big"}, "taylorglo.sigma", "must be a number"),
    ({"population_size": 2.5}, "taylorglo.population_size", "must be an integer"),
])
def test_bad_values_are_refused_naming_the_field(values, field, words):
    errors = errors_of({"method": "taylorglo", "taylorglo": values})
    assert list(errors) == [field]
    assert words in errors[field]


def test_every_bad_field_is_reported_at_once():
    errors = errors_of({"method": "taylorglo", "taylorglo": {"population_size": 1, "generations": 0, "sigma": -1}})
    assert set(errors) == {"taylorglo.population_size", "taylorglo.generations", "taylorglo.sigma"}


def test_an_unknown_field_is_named_with_a_suggestion():
    errors = errors_of({"method": "taylorglo", "taylorglo": {"popsize": 10}})
    assert "taylorglo.popsize" in errors and "population_size" in errors["taylorglo.popsize"]


def test_the_section_is_only_range_checked_when_taylorglo_runs():
    config = load_config({"method": "evomal", "taylorglo": {"population_size": 3}}, check_data=False)
    assert config.taylorglo.population_size == 3


def test_the_section_round_trips_through_the_stored_form():
    config = load_config({"method": "taylorglo", "taylorglo": {"population_size": 6, "mean": 0.5}}, check_data=False)
    again = load_config(config.to_dict(), check_data=False)
    assert again == config and again.taylorglo.mean == 0.5
