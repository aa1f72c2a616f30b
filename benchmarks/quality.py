"""Do the learned losses beat the baseline at its own best learning rate? Each method, many search seeds.

    python -m benchmarks.quality                      # 5 search seeds x 3 tasks x 5 runs: about 13 hours
    python -m benchmarks.quality --methods evomal --tasks digits/mlp --search-seeds 3
    python -m benchmarks.quality --smoke              # tiny budgets: checks that everything runs (minutes)
    python -m benchmarks.quality --json quality.json  # also write every per-seed record
    python -m benchmarks.quality --merge a.json b.json  # train nothing: one report of parts run apart

For each task (digits/MLP, digits28/LeNet-5, diabetes/MLP) and method (EvoMAL, GP-LFL, ML3,
TaylorGLO), the search runs once per search seed (0, 1, ...; the seed also splits the data). The
experiment's learned loss (`search_engine.scoring.final_choice.choose_final` where the engine has
it, else the hall of fame's best entry; the output says which) is then meta-tested on the test split
that search never saw (`scoring.metatest.evaluate_learned_loss`): trained from scratch on paired
seeds beside the baseline (cross-entropy / squared error), each loss at its own best learning rate
picked on validation data. That comparison decides: a win when the learned loss's mean test metric is
significantly lower (paired t-test p < 0.05), a loss when significantly higher or when training with
it diverged, else a tie (`scoring.verdict`, as the dashboard says it). EvoMAL runs twice side by side:
with `training.lr_protocol` "fixed" (the paper's fitness at one rate) and "tuned" (the default).
A control runs beside them on the classification tasks: the squared error on the softmax (a known
loss the searches start from) meta-tested on each search seed's split with no search at all, so the
table shows how much of a learned loss's win a loss anyone could pick wins too.

One table row per task and method: protocol | search seeds | wins / ties / losses | mean relative
change (baseline - learned) / baseline at tuned rates | the same at the configured rate
`training.lr` (the paper's meta-test protocol, second) | median search seconds, wall (CPU). Per-seed
lines above it show each search's loss and test means so that a reader can check the table. A second
table sets EvoMAL's (tuned) learned loss against each other method's, search seed by search seed:
both at their own tuned rates on the same paired test seeds, so "at least as good as the other
methods" is read from paired t-tests, not from two tallies against the baseline.

Budgets per search: digits/MLP is configs/quick.json (population 25, 10 generations, 300 training
steps, local search 50 meta steps, meta-test 1500 steps); diabetes/MLP the same sizes with
configs/diabetes_mlp.json's optimizer and screen; digits28/LeNet-5 configs/mnist_lenet5.json's
optimizer with sizes cut to stay within 10 CPU-minutes per search (8 generations, 250 steps, 30 meta
steps, meta-test 1000 steps). Every method gets the same sizes (`benchmarks.methods.method_config`):
TaylorGLO the same population and generations, ML3 about 250 meta steps with its network scored once
per generation of the others. Every random choice comes from the search seed. Nothing here is asserted.

The full run takes about 13 hours on 2 CPU cores, 10 of them digits28/LeNet-5 (each search seed's
final choice trains LeNet-5 about 40 times, the meta-test, which reuses its rate tuning, 25 more);
each task can run on its own (`--tasks`), in parallel where there are cores to spare (every search
computes on one thread). The control adds about an hour: on LeNet-5 each search seed's meta-test of
the squared error trains LeNet-5 about 45 times (its rate tuning and the search rate's are not shared).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from benchmarks.methods import TASKS, method_config
from benchmarks.quality_report import detail_line, merged, report, write_json
from search_engine import catalog
from search_engine.config import TrainingConfig, load_config
from search_engine.expr.tree import KNOWN_LOSSES, to_prefix
from search_engine.scoring.metatest import evaluate_learned_loss
from search_engine.scoring.verdict import verdict
from search_engine.study.driver import run_search
from search_engine.tasks.task import load_task

ROOT = Path(__file__).resolve().parents[1]

#: The preset each task's optimizer, batch and rejection screen come from.
PRESETS = {"digits/mlp": "quick.json", "diabetes/mlp": "diabetes_mlp.json", "digits28/lenet5": "mnist_lenet5.json"}
DEFAULT_TASKS = ("digits/mlp", "digits28/lenet5", "diabetes/mlp")

_QUICK = {"population": 25, "generations": 10, "steps": 300, "ls_steps": 50, "meta_steps": 250,
          "test_steps": 1500, "max_train": None}
#: Sizes of one search (the keys of `benchmarks.methods.budget`, less the test seeds, set apart; a
#: "batch_size" replaces the preset's).
SIZES = {
    "digits/mlp": _QUICK,  # configs/quick.json
    "diabetes/mlp": _QUICK,  # quick.json's sizes; a training step costs about what a digits one does
    # mnist_lenet5.json (25 x 50, 500 steps, 250 meta steps) cut to ~7 CPU-minutes on one thread: the
    # baseline's rate and 3 generations of these sizes took 164 CPU-s (a generation ~45 s).
    "digits28/lenet5": {"population": 25, "generations": 8, "steps": 250, "ls_steps": 30, "meta_steps": 240,
                        "test_steps": 1000, "max_train": None},
}
#: Only checks that everything runs: a few CPU-minutes for every task, method and 2 search seeds. Batches
#: of 32: LeNet-5's meta-tests (~40 trainings per search seed with the final choice) dominate the time.
SMOKE_SIZES = {"population": 4, "generations": 2, "steps": 30, "ls_steps": 3, "meta_steps": 6,
               "test_steps": 40, "max_train": 300, "batch_size": 32}
#: Methods that score candidates by training, so `training.lr_protocol` decides their fitness (ML3
#: learns its network by meta-gradients at `training.lr`).
PROTOCOLS = ("fixed", "tuned")
USES_LR_PROTOCOL = tuple(name for name, m in catalog.METHODS.items() if m.lr_protocol)
FINAL_CHOICE = "search_engine.scoring.final_choice"


#: Known losses meta-tested on each search seed's data without a search (`--methods` names them
#: beside the methods): what a loss anyone could pick does, set beside what the searches found.
#: Classification only: for regression the squared error is the baseline itself.
CONTROLS = {"squared_error": "Squared error (no search)"}


@dataclass(frozen=True)
class Arm:
    """One method as the benchmark runs it (EvoMAL once per learning-rate protocol), or a control: a
    known loss of `CONTROLS`, meta-tested as EvoMAL's (tuned) learned loss would be, with no search."""

    method: str
    protocol: str | None  # training.lr_protocol; None keeps the configuration's default
    control: str | None = None  # a key of CONTROLS

    @property
    def label(self) -> str:
        if self.control:
            return CONTROLS[self.control]
        base = catalog.METHODS[self.method].label
        return f"{base} ({self.protocol})" if self.method == "evomal" else base

    @property
    def shown_protocol(self) -> str:
        if self.control or self.method not in USES_LR_PROTOCOL:
            return "n/a"
        return self.protocol or TrainingConfig.lr_protocol


def arms(methods: list[str], protocols: tuple[str, ...] = ("fixed", "tuned")) -> list[Arm]:
    """The runs of `methods` (method names and `CONTROLS` keys), EvoMAL once per protocol of
    `protocols` (its fixed- and tuned-rate fitness side by side by default)."""
    out = []
    for method in methods:
        if method in CONTROLS:
            out.append(Arm("evomal", "tuned", control=method))
        else:
            out += [Arm(method, p) for p in protocols] if method == "evomal" else [Arm(method, None)]
    return out


#: Every arm's label, in the order the table lists them.
LABELS = [a.label for a in arms([*catalog.METHODS, *CONTROLS])]


def runs_on(arm: Arm, task: str) -> bool:
    """Whether `arm` has anything to compare on `task`: a control is a classification loss (for
    regression the squared error is the baseline)."""
    return not arm.control or catalog.dataset_kind(TASKS[task]["dataset"]) == "classification"


def sizes(task: str, smoke: bool, test_seeds: int) -> dict:
    """The budget of one search of `task` in `benchmarks.methods.budget`'s form."""
    return {**(SMOKE_SIZES if smoke else SIZES[task]), "seeds": test_seeds}


def arm_config(arm: Arm, task: str, b: dict, seed: int) -> dict:
    """The configuration of `arm` on `task`: methods' shared sizes, the task preset's optimizer and screen."""
    preset = json.loads((ROOT / "configs" / PRESETS[task]).read_text())
    config = method_config(arm.method, TASKS[task], b, seed)
    optimizer = {k: v for k, v in preset["training"].items() if k != "steps"}
    config["training"] = {**config["training"], **optimizer}
    if b.get("batch_size"):
        config["training"]["batch_size"] = b["batch_size"]
    if arm.protocol:
        config["training"]["lr_protocol"] = arm.protocol
    config["rejection"] = preset.get("rejection", {})
    if arm.method == "ml3":  # one network snapshot scored per generation of the others
        config["ml3"]["report_every"] = max(1, b["meta_steps"] // b["generations"])
    return config


# ------------------------------------------------------------------ one search seed


def final_chooser():
    """`choose_final` of the engine's final choice on validation, or None where the engine has none."""
    if importlib.util.find_spec(FINAL_CHOICE) is None:
        return None
    return getattr(importlib.import_module(FINAL_CHOICE), "choose_final", None)


def learned_entry(chooser, task, config, result) -> tuple[object, dict | None]:
    """The experiment's learned loss and the final choice's record: `chooser`'s pick among the hall of
    fame's best on validation (never the test split), else the best entry and None."""
    if chooser is None or result.best is None:
        return result.best, None
    choice = chooser(task, config, result.hall_of_fame, result.baseline_loss)
    return result.hall_of_fame[choice["chosen"] - 1], choice


def meta_test(task, config, entry, baseline: str, choice: dict | None = None) -> dict:
    """evaluate_learned_loss at tuned rates; with the scale the search trained the loss at, where the
    entry has one and the engine's meta-test takes it, and with the final choice's rate tuning of the
    same losses, where the engine reuses it (the same numbers, fewer trainings)."""
    extra = {}
    accepted = inspect.signature(evaluate_learned_loss).parameters
    scale = getattr(entry, "scale", None)
    if scale is not None and "scale" in accepted:
        extra["scale"] = scale
    tuning_of = getattr(importlib.import_module(FINAL_CHOICE), "tuning_of", None) if choice else None
    if tuning_of is not None and "tuning" in accepted:
        extra["tuning"] = tuning_of(choice, config.meta_test.steps)
    return evaluate_learned_loss(task, config, entry.expression, entry.weights, baseline, network=entry.network,
                                 tune_lr=True, **extra)


def run_seed(arm: Arm, task_name: str, b: dict, seed: int, chooser) -> dict:
    """Search with `seed`, then meta-test its learned loss: one per-seed record. A control searches
    nothing: its known loss is meta-tested on the same split (the seed splits the data)."""
    config = load_config(arm_config(arm, task_name, b, seed))
    wall, cpu = time.perf_counter(), time.process_time()
    result = None if arm.control else run_search(config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    task = load_task(config)
    started = time.perf_counter()
    if result is None:
        entry, choice = SimpleNamespace(expression=to_prefix(KNOWN_LOSSES[arm.control]), weights=None, network=None), None
        baseline = catalog.baseline_name(task.kind)
    else:
        entry, choice = learned_entry(chooser, task, config, result)
        baseline = result.baseline_loss
    out = {"task": task_name, "method": arm.control or arm.method, "label": arm.label, "protocol": arm.shown_protocol,
           "search_seed": seed, "seconds": wall, "cpu_seconds": cpu, "kind": task.kind,
           "rank": choice["chosen"] if choice else 1, "final_choice": choice}
    if entry is None:
        return {**out, "expression": None, "outcome": "none", "record": None}
    record = meta_test(task, config, entry, baseline, choice)
    out["meta_test_seconds"] = time.perf_counter() - started  # the final choice and the meta-test
    return {**out, "expression": entry.expression, "weights": entry.weights, "scale": getattr(entry, "scale", None),
            "outcome": verdict(record, task.kind).code, "record": record}


# ------------------------------------------------------------------ command line


def _names(value: str, known) -> list[str]:
    """Comma-separated names, each one of `known` (argparse names the flag in its error)."""
    names = [n for n in value.split(",") if n]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(bad) or '(none given)'}; known: {', '.join(known)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the seed counts' defaults filled in (smoke: 2 each) and checked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets and 2 search seeds, to check that it runs")
    parser.add_argument("--methods", default=",".join([*catalog.METHODS, *CONTROLS]),
                        type=lambda v: _names(v, [*catalog.METHODS, *CONTROLS]),
                        help="comma-separated methods and controls (known losses, no search: "
                             f"{', '.join(CONTROLS)}); default all")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                        type=lambda v: _names(v, TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--search-seeds", type=int, default=None, help="searches per task and method (default 5; smoke 2)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first search seed (default 0): a long table can be run in parts")
    parser.add_argument("--test-seeds", type=int, default=None, help="paired meta-test seeds (default 5; smoke 2)")
    parser.add_argument("--json", default=None, help="write every per-seed record to this file")
    parser.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                        help="train nothing: report the records of these --json files (a table run in parts) together")
    parser.add_argument("--evomal-protocols", default="fixed,tuned", type=lambda v: tuple(_names(v, PROTOCOLS)),
                        help="EvoMAL's arms: training.lr_protocol values, comma-separated (default both)")
    args = parser.parse_args(argv)
    default = 2 if args.smoke else 5
    args.search_seeds = default if args.search_seeds is None else args.search_seeds
    args.test_seeds = default if args.test_seeds is None else args.test_seeds
    if args.search_seeds < 1:
        parser.error(f"--search-seeds: must be at least 1, got {args.search_seeds}")
    if args.first_seed < 0:
        parser.error(f"--first-seed: must be at least 0, got {args.first_seed}")
    if args.test_seeds < 2:
        parser.error(f"--test-seeds: must be at least 2 (a paired t-test needs two), got {args.test_seeds}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run every task, method and search seed; per-seed lines as they finish, then the table."""
    args = parse_args(argv)
    if args.merge:
        try:
            _, records = merged(args.merge)
        except ValueError as error:
            raise SystemExit(f"--merge: {error}") from None
        for r in records:
            print(detail_line(r))
        report(records, LABELS)
        return
    chooser = final_chooser()
    print("learned loss: " + (f"{FINAL_CHOICE}.choose_final (the hall of fame's best compared on validation, "
                              "each at its own best rate)" if chooser else
                              f"each search's best hall-of-fame entry ({FINAL_CHOICE}.choose_final not found)"))
    print(f"search seeds {args.first_seed}..{args.first_seed + args.search_seeds - 1}; {args.test_seeds} paired test seeds; "
          "metric: error rate (digits) / MSE (diabetes), lower is better")
    budgets = {task: sizes(task, args.smoke, args.test_seeds) for task in args.tasks}
    records = []
    for task in args.tasks:
        print(f"{task}: {budgets[task]}", flush=True)
        for arm in (a for a in arms(args.methods, args.evomal_protocols) if runs_on(a, task)):
            per_seed = []
            for seed in range(args.first_seed, args.first_seed + args.search_seeds):  # hours in all: each seed is reported and kept when done
                per_seed.append(run_seed(arm, task, budgets[task], seed, chooser))
                print(detail_line(per_seed[-1]), flush=True)
                if args.json:
                    write_json(args.json, budgets, records + per_seed)
            records += per_seed
    report(records, LABELS)


if __name__ == "__main__":
    main()
