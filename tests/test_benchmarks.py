"""The speed benchmark's pieces still run against the engine (its timings are never asserted)."""

import os
import re
import subprocess
import sys
from pathlib import Path

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


def test_live_updates_smoke_reaches_every_viewer():
    """The live-updates benchmark on its own embedded stack (Redis, SQLite, daphne, 5 viewers): every
    event reaches every viewer and the table has one row per generation (the delays are not asserted)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LFL_TEST_DATABASE_URL", "REDIS_URL")}
    result = subprocess.run([sys.executable, "-m", "benchmarks.live_updates", "--smoke"], cwd=Path(__file__).parents[1],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [cells[0].strip() for cells in rows] == ["0", "1", "2"]
    assert all(cells[4].strip() == "0" and float(cells[6]) > 0 for cells in rows)  # no drop; a message arrived
    assert "total drops 0; viewers lost 0 of 5" in result.stdout


def test_scale_out_smoke_runs_one_search_on_one_and_on_two_workers():
    """The scale-out benchmark on its own stacks (Redis, SQLite, coordinator, 1 then 2 real workers):
    both searches succeed with identical histories, and the table has a row per generation (the
    speed-up is not asserted)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LFL_TEST_DATABASE_URL", "REDIS_URL")}
    result = subprocess.run([sys.executable, "-m", "benchmarks.scale_out", "--smoke"], cwd=Path(__file__).parents[1],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [cells[0].strip() for cells in rows] == ["0", "1"]
    assert "histories identical (without seconds): yes" in result.stdout
