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


def test_each_strategy_states_its_work_labels_and_generations_without_torch():
    """Pages ask a method's strategy object for its generation count, work and step labels: every
    method's module imports without torch, and each strategy answers for its own section."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from search_engine import catalog\n"
            "from search_engine.config import load_config\n"
            "from search_engine.study.method import generation_count, method_named\n"
            "for name in catalog.METHODS:\n"
            "    m = method_named(name)\n"
            "    c = load_config({'method': name}, check_data=False)\n"
            "    m.planned_work(c); m.step_labels(); generation_count(c.to_dict())\n"
            "print('torch' in sys.modules, 'sympy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    stored = {"method": "ml3", "ml3": {"meta_steps": 101, "report_every": 25}}
    assert method_named("ml3").generation_count(stored) == 5  # the last report is shorter
    assert method_named("taylorglo").generation_count({"method": "taylorglo", "taylorglo": {"generations": 7}}) == 7
    assert method_named("random").generation_count({"method": "random", "search": {"generations": 9}}) == 9
    assert method_named("evomal").network_weight_count({}) is None
    assert method_named("ml3").network_weight_count({"method": "ml3"}) == 2 * 50 + 50 * 50 + 50  # 2 -> 50 -> 50 -> 1
    config = tiny_config(method="ml3", ml3={"meta_steps": 10, "inner_steps": 2, "report_every": 4})
    assert method_named("ml3").planned_work(config) == (3, 0, 0, 20, config.meta_test.seeds * 2)


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
