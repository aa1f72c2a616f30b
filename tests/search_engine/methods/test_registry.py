"""One entry point for every method; GP-LFL is the evolutionary search without local search."""

from __future__ import annotations

import pytest

from search_engine import catalog
from search_engine.config import ConfigError
from search_engine.evolution.loop import run_search
from search_engine.methods import registry
from search_engine.methods.settings import effective
from tests.search_engine.conftest import tiny_config


def _history(result):
    return [{k: v for k, v in g.to_dict().items() if k != "seconds"} for g in result.history]


def test_every_catalogue_method_has_a_strategy_with_run():
    for name in catalog.METHODS:
        assert callable(registry.strategy(name).run)
    with pytest.raises(KeyError, match="unknown method 'sgd'"):
        registry.strategy("sgd")


def test_an_unknown_method_is_refused_by_name():
    with pytest.raises(ConfigError) as err:
        tiny_config(method="sgd")
    assert set(err.value.errors) == {"method"} and "evomal" in err.value.errors["method"]


def test_gplfl_is_the_search_with_local_search_off_and_reproducible():
    config = tiny_config(method="gplfl", local_search={"mode": "all", "meta_steps": 3})
    assert effective(config).local_search.mode == "off" and effective(tiny_config()) == tiny_config()
    events = []
    a = registry.run_method(config, events.append)
    b = registry.run_method(config)
    assert _history(a) == _history(b) and a.best == b.best
    assert all(h.weights is None for h in a.hall_of_fame)  # symbolic losses only
    assert not any(e.type == "candidate_refined" for e in events)
    plain = run_search(tiny_config(local_search={"mode": "off"}))
    assert _history(plain) == _history(a)  # exactly the GP search with local search off


def test_evomal_through_the_registry_is_run_search():
    config = tiny_config()
    assert _history(registry.run_method(config)) == _history(run_search(config))
