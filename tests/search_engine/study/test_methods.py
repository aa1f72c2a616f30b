"""One driver for every method; GP-LFL is the evolutionary search without local search."""

from __future__ import annotations

import pytest

from search_engine import catalog
from search_engine.config import ConfigError
from search_engine.methods.settings import effective
from search_engine.study.driver import run_search
from search_engine.study.method import Method, method_named
from tests.search_engine.conftest import tiny_config


def _history(result):
    return [{k: v for k, v in g.to_dict().items() if k != "seconds"} for g in result.history]


def test_every_catalogue_method_has_a_strategy():
    for name in catalog.METHODS:
        assert isinstance(method_named(name), Method) and method_named(name).name == name
    with pytest.raises(KeyError, match="unknown method 'sgd'"):
        method_named("sgd")


def test_an_unknown_method_is_refused_by_name():
    with pytest.raises(ConfigError) as err:
        tiny_config(method="sgd")
    assert set(err.value.errors) == {"method"} and "evomal" in err.value.errors["method"]


def test_gplfl_is_the_search_with_local_search_off_and_reproducible():
    config = tiny_config(method="gplfl", local_search={"mode": "all", "meta_steps": 3})
    assert effective(config).local_search.mode == "off" and effective(tiny_config()) == tiny_config()
    events = []
    a = run_search(config, events.append)
    b = run_search(config)
    assert _history(a) == _history(b) and a.best == b.best
    assert all(h.weights is None for h in a.hall_of_fame)  # symbolic losses only
    assert not any(e.type == "candidate_refined" for e in events)
    plain = run_search(tiny_config(local_search={"mode": "off"}))
    assert _history(plain) == _history(a)  # exactly the GP search with local search off


def test_the_package_entry_point_honours_the_method():
    import search_engine

    result = search_engine.run_search(tiny_config(method="gplfl", local_search={"mode": "all", "meta_steps": 3}))
    assert result.config["method"] == "gplfl" and result.config["local_search"]["mode"] == "off"
