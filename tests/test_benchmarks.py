"""The speed benchmark's pieces still run against the engine (its timings are never asserted)."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
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


@pytest.mark.stack  # a stack of real processes, up to 10 minutes
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


@pytest.mark.stack  # a stack of real processes, up to 10 minutes
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


def test_quality_configurations_follow_the_presets():
    """Every task and run of benchmarks.quality validates; EvoMAL runs once per learning-rate protocol;
    the search seed and the number of test seeds reach the configuration; digits/MLP searches with
    configs/quick.json's sizes and settings, diabetes/MLP with its preset's optimizer and screen."""
    from benchmarks import quality
    from search_engine import catalog
    from search_engine.config import TrainingConfig

    runs = quality.arms(list(catalog.METHODS))
    assert [(a.method, a.protocol) for a in runs] == [
        ("evomal", "fixed"), ("evomal", "tuned"), ("gplfl", None), ("ml3", None), ("taylorglo", None), ("random", None)]
    assert [(a.method, a.protocol) for a in quality.arms(["evomal", "ml3"], ("tuned",))] == [
        ("evomal", "tuned"), ("ml3", None)]
    assert [a.label for a in runs[:2]] == ["EvoMAL (fixed)", "EvoMAL (tuned)"]
    for smoke in (True, False):
        for task in quality.TASKS:
            for arm in runs:
                config = load_config(quality.arm_config(arm, task, quality.sizes(task, smoke, 4), 3), check_data=False)
                assert (config.method, config.seed, config.meta_test.seeds, config.meta_test.tune_lr) == (
                    arm.method, 3, 4, True)
                assert config.training.lr_protocol == (arm.protocol or TrainingConfig.lr_protocol)
    root = Path(__file__).parents[1] / "configs"
    tuned = quality.Arm("evomal", "tuned")
    quick = load_config(root / "quick.json", check_data=False)
    digits = load_config(quality.arm_config(tuned, "digits/mlp", quality.sizes("digits/mlp", False, 5), 0),
                         check_data=False)
    assert (digits.search.population_size, digits.search.generations) == (quick.search.population_size,
                                                                           quick.search.generations)
    assert digits.training == quick.training and digits.rejection == quick.rejection
    assert (digits.local_search.meta_steps, digits.local_search.meta_lr, digits.meta_test.steps) == (
        quick.local_search.meta_steps, quick.local_search.meta_lr, quick.meta_test.steps)
    preset = load_config(root / "diabetes_mlp.json", check_data=False)
    diabetes = load_config(quality.arm_config(tuned, "diabetes/mlp", quality.sizes("diabetes/mlp", False, 5), 0),
                           check_data=False)
    assert diabetes.training == dataclasses.replace(preset.training, steps=quick.training.steps)
    assert diabetes.rejection == preset.rejection


def test_quality_table_counts_each_search_seed_once(capsys):
    """A row counts wins, ties and losses over the search seeds and averages the relative changes
    where they are defined (a diverged seed has no mean)."""
    from benchmarks import quality_report

    def record(outcome, tuned, fixed, seconds):
        return {"task": "digits/mlp", "label": "EvoMAL (tuned)", "protocol": "tuned", "outcome": outcome,
                "seconds": seconds, "cpu_seconds": seconds - 1,
                "record": {"learned_mean": fixed[0], "baseline_mean": fixed[1],
                           "tuned_lr": {"learned_mean": tuned[0], "baseline_mean": tuned[1]}}}

    records = [record("better", (0.08, 0.10), (0.05, 0.10), 10), record("tie", (0.10, 0.10), (0.10, 0.10), 30),
               record("worse", (0.11, 0.10), (None, 0.10), 20)]
    row = quality_report.table_row(records)
    assert row == ["digits/mlp", "EvoMAL (tuned)", "tuned", "3", "1 / 1 / 1", "+3.3%", "+25.0% (n/a on 1)", "20 (19)"]
    quality_report.print_table([row])
    assert capsys.readouterr().out.splitlines()[2].startswith("| digits/mlp | EvoMAL (tuned) | tuned | 3 | 1 / 1 / 1 |")


def test_quality_refuses_unknown_names_and_too_few_seeds(capsys):
    from benchmarks import quality

    for argv, message in ((["--methods", "evomal,ml4"], "argument --methods: unknown ml4"),
                          (["--tasks", "digits/vgg"], "argument --tasks: unknown digits/vgg"),
                          (["--test-seeds", "1"], "--test-seeds: must be at least 2"),
                          (["--search-seeds", "0"], "--search-seeds: must be at least 1"),
                          (["--first-seed", "-1"], "--first-seed: must be at least 0")):
        with pytest.raises(SystemExit):
            quality.parse_args(argv)
        assert message in capsys.readouterr().err
    assert quality.parse_args(["--first-seed", "2", "--search-seeds", "3"]).first_seed == 2


@pytest.mark.stack  # ten searches and their meta-tests in a subprocess, a few minutes on a busy machine
def test_quality_smoke_meta_tests_every_method_on_each_search_seed(tmp_path):
    """benchmarks.quality --smoke on digits/MLP (a few minutes): a row per method, EvoMAL's fixed and
    tuned fitness side by side, every search seed counted once, and each per-seed record holds a
    comparison at tuned rates over the test seeds whose verdict is the one counted."""
    from search_engine.scoring.verdict import verdict

    out = tmp_path / "quality.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.quality", "--smoke", "--tasks", "digits/mlp",
                             "--json", str(out)], cwd=Path(__file__).parents[1], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [[c.strip() for c in line.split("|")[1:-1]] for line in result.stdout.splitlines()
             if line.startswith("| digits/mlp |")]
    rows = [r for r in lines if " vs " not in r[1]]
    labels = ("EvoMAL (fixed)", "EvoMAL (tuned)", "GP-LFL", "ML3", "TaylorGLO", "Random search",
              "Squared error (no search)")
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("EvoMAL (fixed)", "fixed", "2"), ("EvoMAL (tuned)", "tuned", "2"), ("GP-LFL", "tuned", "2"),
        ("ML3", "n/a", "2"), ("TaylorGLO", "tuned", "2"), ("Random search", "tuned", "2"),
        ("Squared error (no search)", "n/a", "2")]
    assert all(sum(int(n) for n in r[4].split(" / ")) == 2 for r in rows)
    versus = [r[1] for r in lines if " vs " in r[1]]  # EvoMAL's learned loss against every other arm's
    assert versus == [f"EvoMAL (tuned) vs {label}" for label in labels if label != "EvoMAL (tuned)"]
    records = json.loads(out.read_text())["records"]
    assert [(r["label"], r["search_seed"]) for r in records] == [(label, seed) for label in labels for seed in (0, 1)]
    control = [r for r in records if r["label"] == "Squared error (no search)"]
    assert {r["expression"] for r in control} == {"square(sub(y, f))"} and all(r["final_choice"] is None for r in control)
    for r in records:
        assert len(r["record"]["tuned_lr"]["seeds"]) == 2
        assert r["outcome"] == verdict(r["record"], "classification").code
        assert f"{r['label']} seed {r['search_seed']}:" in result.stdout


def test_generation_cost_presets_run_each_protocol_alike():
    """The searches benchmarks.generation_cost times, and each variant's configuration."""
    from benchmarks import generation_cost as gc

    found = gc.presets(generations=3, lenet_steps=50, smoke=False)
    assert set(found) == {"quick.json", "mnist_lenet5 on digits28"}
    lenet = found["mnist_lenet5 on digits28"]
    assert lenet["task"]["dataset"] == "digits28" and lenet["training"]["steps"] == 50
    assert all(c["search"]["generations"] == 3 and c["device"] == "cpu" for c in found.values())
    quick = found["quick.json"]
    assert gc.with_protocol(quick, "fixed")["training"]["lr_protocol"] == "fixed"
    assert "lr_protocol" not in gc.with_protocol({**quick, "training": {**quick["training"], "lr_protocol": "tuned"}},
                                                 None)["training"]
    labels = [label for label, _, _ in gc.variants(Path("/elsewhere"))]
    assert labels[0].startswith("earlier code") and len(labels) == 3


@pytest.mark.stack  # four searches in fresh interpreters
def test_generation_cost_smoke_prints_a_ratio_per_variant(capsys):
    from benchmarks import generation_cost as gc

    gc.main(["--smoke", "--seeds", "2", "--only", "quick"])
    out = capsys.readouterr().out
    assert "seed 1 repeat 0" in out and "lenet" not in out.lower()
    rows = [line for line in out.splitlines() if line.startswith("| quick.json |")]
    assert [row.split("|")[2].strip() for row in rows] == ["fixed rate (the paper's protocol)", "tuned (default)"]
    assert rows[0].split("|")[4].strip() == "1.00x" and rows[0].split("|")[6].strip() == "1.00x"
    assert all(float(row.split("|")[7]) >= 0 for row in rows)  # candidates trained per generation
    # seconds per trained candidate: "n/a" where a tiny search's later generations trained none (all cached)
    assert all(row.split("|")[8].strip() == "n/a" or float(row.split("|")[8]) > 0 for row in rows)
    with pytest.raises(SystemExit):
        gc.main(["--only", "cifar"])


def _quality_record(label, seed, learned, baseline=(0.10, 0.11, 0.12, 0.10), task="digits28/lenet5"):
    """A benchmarks.quality per-seed record whose tuned comparison has these test metrics."""
    from search_engine.scoring.metatest import compare

    seeds = tuple(seed + 1000 + i for i in range(len(learned)))
    tuned = compare(learned, baseline, seeds=seeds, metric="error").to_dict()
    return {"task": task, "label": label, "method": label.split(" ")[0].lower(), "protocol": "tuned",
            "search_seed": seed, "kind": "classification", "seconds": 10.0, "cpu_seconds": 9.0, "rank": 1,
            "final_choice": None, "expression": "mul(-1, mul(y, log(f)))", "outcome": "tie",
            "record": {"learned_mean": tuned["learned_mean"], "baseline_mean": tuned["baseline_mean"],
                       "tuned_lr": {**tuned, "learned_lr": 0.1, "baseline_lr": 0.1}}}


def test_quality_head_to_head_pairs_the_learned_losses_seed_by_seed():
    """EvoMAL's learned loss against another method's: a paired test per search seed on the same test
    seeds; seeds only one of them ran are not compared, nor seeds whose test seeds differ."""
    from benchmarks import quality_report

    evomal = [_quality_record("EvoMAL (tuned)", 0, (0.02, 0.03, 0.025, 0.02)),
              _quality_record("EvoMAL (tuned)", 1, (0.05, 0.05, 0.06, 0.05)),
              _quality_record("EvoMAL (tuned)", 2, (0.05, 0.05, 0.06, 0.05)),
              _quality_record("EvoMAL (tuned)", 3, (0.05, 0.05, 0.06, 0.05))]
    other = [_quality_record("GP-LFL", 0, (0.06, 0.065, 0.07, 0.06)),  # EvoMAL's is clearly lower
             _quality_record("GP-LFL", 1, (0.05, 0.06, 0.05, 0.05)),  # the same within noise: a tie
             _quality_record("GP-LFL", 2, (0.02, 0.021, 0.03, 0.02)),  # GP-LFL's is clearly lower
             _quality_record("GP-LFL", 4, (0.02, 0.02, 0.02, 0.02))]  # EvoMAL has no seed 4
    moved = _quality_record("GP-LFL", 3, (0.02, 0.02, 0.02, 0.03))
    moved["record"]["tuned_lr"]["seeds"] = [7, 8, 9, 10]
    rows = quality_report.head_to_head(evomal + other + [moved])
    assert len(rows) == 1
    task, pair, seeds, tally, change = rows[0]
    assert (task, pair, seeds, tally) == ("digits28/lenet5", "EvoMAL (tuned) vs GP-LFL", "3 (1 left out)", "1 / 1 / 1")
    means = [((0.06 + 0.065 + 0.07 + 0.06) / 4, (0.02 + 0.03 + 0.025 + 0.02) / 4), (0.0525, 0.0525),
             ((0.02 + 0.021 + 0.03 + 0.02) / 4, 0.0525)]  # (GP-LFL's, EvoMAL's) on seeds 0, 1, 2
    assert change == f"{100 * sum((g - e) / g for g, e in means) / 3:+.1f}%"
    assert quality_report.head_to_head(other) == []  # no EvoMAL (tuned) records: nothing to set against


def test_quality_merge_reports_parts_together_and_refuses_clashes(tmp_path, capsys):
    """--merge: several --json files make one table; a seed in two files, sizes that differ and a file
    that is not a record file are refused with the file named."""
    from benchmarks import quality, quality_report

    budgets = {"digits28/lenet5": quality.sizes("digits28/lenet5", False, 4)}
    first, second, clash, other_sizes, broken = (tmp_path / n for n in ("a.json", "b.json", "c.json", "d.json", "e.json"))
    quality_report.write_json(str(first), budgets, [_quality_record("EvoMAL (tuned)", 0, (0.02, 0.03, 0.025, 0.02))])
    quality_report.write_json(str(second), budgets, [_quality_record("EvoMAL (tuned)", 1, (0.05, 0.05, 0.06, 0.05)),
                                              _quality_record("GP-LFL", 0, (0.06, 0.065, 0.07, 0.06))])
    quality_report.write_json(str(clash), budgets, [_quality_record("GP-LFL", 0, (0.06, 0.065, 0.07, 0.06))])
    quality_report.write_json(str(other_sizes), {"digits28/lenet5": {**budgets["digits28/lenet5"], "steps": 99}}, [])
    broken.write_text("{}")
    quality.main(["--merge", str(first), str(second)])
    out = capsys.readouterr().out
    assert "| digits28/lenet5 | EvoMAL (tuned) | tuned | 2 |" in out
    assert "| digits28/lenet5 | GP-LFL | tuned | 1 |" in out
    assert "| digits28/lenet5 | EvoMAL (tuned) vs GP-LFL | 1 | 1 / 0 / 0 |" in out
    for files, message in (((second, clash), f"GP-LFL seed 0 on digits28/lenet5 is also in {second}"),
                           ((first, other_sizes), "digits28/lenet5 ran on other sizes"),
                           ((first, broken), f"{broken}: not a benchmarks.quality --json file")):
        with pytest.raises(SystemExit) as refused:
            quality.main(["--merge", *map(str, files)])
        assert message in str(refused.value)


def test_quality_control_is_a_known_loss_on_classification_tasks_only():
    """A control arm meta-tests a known loss with EvoMAL's tuned configuration and no search; it has no
    regression task (there the squared error is the baseline itself)."""
    from benchmarks import quality

    control, = quality.arms(["squared_error"])
    assert (control.method, control.protocol, control.control) == ("evomal", "tuned", "squared_error")
    assert (control.label, control.shown_protocol) == ("Squared error (no search)", "n/a")
    assert [task for task in quality.TASKS if quality.runs_on(control, task)] == ["digits/mlp", "digits28/lenet5"]
    assert all(quality.runs_on(arm, task) for arm in quality.arms(["evomal", "ml3"]) for task in quality.TASKS)
    assert quality.parse_args([]).methods[-1] == "squared_error"
