"""The speed benchmark's pieces still run against the engine (its timings are never asserted)."""

import torch

from benchmarks import search_speed as bench
from search_engine.config import load_config
from search_engine.tasks.task import load_task


def test_presets_validate():
    for quick in (True, False):
        cfg = load_config(bench.lenet_search_preset(quick))
        assert cfg.task.dataset == "digits28" and cfg.local_search.mode == "all"
        assert cfg.search.population_size == 25
        load_config(bench.lenet_preset(local=quick))


def test_step_rows_and_table(capsys):
    threads = torch.get_num_threads()
    try:
        task = load_task(bench._config("digits", "logistic"))
        rows = bench.step_rows(task, "logistic", [1, 2], steps=2, floor=100.0)
    finally:
        torch.set_num_threads(threads)
    assert [r[0] for r in rows] == ["logistic train step, P=1", "logistic train step, P=2"]
    assert all(r[3].endswith("x") and float(r[3][:-1]) > 0 for r in rows)
    bench.print_table(["measurement", "a", "b", "c", "d", "e"], rows)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[0].startswith("| measurement")


def test_every_method_has_a_valid_comparison_configuration():
    from benchmarks import methods
    from search_engine import catalog

    for smoke in (True, False):
        for task in methods.TASKS.values():
            for method in catalog.METHODS:
                config = load_config(methods.method_config(method, task, methods.budget(smoke)), check_data=False)
                assert config.method == method and config.meta_test.tune_lr
