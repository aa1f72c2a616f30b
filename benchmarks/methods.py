"""The methods side by side: EvoMAL, GP-LFL, ML3 and TaylorGLO on the same tasks and budget.

    python -m benchmarks.methods            # digits/MLP and diabetes/MLP (~30 min on 2 CPU cores)
    python -m benchmarks.methods --full     # also digits28/LeNet-5 (much longer)
    python -m benchmarks.methods --smoke    # tiny budgets: checks that everything runs (~3 min)

Every method gets the same training settings and the same number of fitness trainings (the
three evolutionary methods: population x generations; ML3 its meta steps, scored at each
report). Each best loss is meta-tested from scratch on the held-out test split over the same
paired seeds against the baseline (cross-entropy / squared error), once at the search's learning
rate and once with each loss at its own best rate picked on validation data (`meta_test.tune_lr`).
One table: method | search seconds | learned test metric mean ± std | baseline | paired p |
better on k/n seeds | the same at tuned learning rates. Our small-scale version of the EvoMAL
paper's main results table; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import time

from search_engine import catalog
from search_engine.config import load_config
from search_engine.scoring.metatest import evaluate_learned_loss
from search_engine.study.driver import run_search
from search_engine.tasks.task import load_task

TASKS = {
    "digits/mlp": {"dataset": "digits", "model": "mlp"},
    "diabetes/mlp": {"dataset": "diabetes", "model": "mlp"},
    "digits28/lenet5": {"dataset": "digits28", "model": "lenet5"},
}


def budget(smoke: bool) -> dict:
    """Sizes shared by every method (the smoke budget only checks that things run)."""
    if smoke:
        return {"population": 4, "generations": 2, "steps": 40, "meta_steps": 6, "ls_steps": 4,
                "test_steps": 60, "seeds": 2, "max_train": 300}
    return {"population": 12, "generations": 6, "steps": 300, "meta_steps": 100, "ls_steps": 25,
            "test_steps": 1500, "seeds": 5, "max_train": None}


def method_config(method: str, task: dict, b: dict, seed: int = 0) -> dict:
    """The configuration of `method` on `task` with budget `b`."""
    config = {
        "method": method,
        "task": {**task, "max_train": b["max_train"]},
        "search": {"population_size": b["population"], "generations": b["generations"]},
        "training": {"steps": b["steps"], "batch_size": 128, "lr": 0.05},
        "local_search": {"mode": "all", "meta_steps": b["ls_steps"], "meta_lr": 0.01},
        "meta_test": {"steps": b["test_steps"], "seeds": b["seeds"], "tune_lr": True},
        "seed": seed, "device": "auto",
    }
    if method == "taylorglo":
        config["taylorglo"] = {"population_size": b["population"], "generations": b["generations"]}
    if method == "ml3":
        # as many fitness trainings as reports; the meta steps are its own kind of work
        config["ml3"] = {"meta_steps": b["meta_steps"], "report_every": max(1, b["meta_steps"] // 4),
                         "meta_lr": 0.001}
    return config


def run_one(method: str, task: dict, b: dict) -> dict:
    """Search, then meta-test the best loss: the figures of one table row."""
    config = load_config(method_config(method, task, b))
    started = time.perf_counter()
    result = run_search(config)
    seconds = time.perf_counter() - started
    best = result.best
    if best is None:
        return {"method": method, "seconds": seconds, "record": None}
    record = evaluate_learned_loss(load_task(config), config, best.expression, best.weights, result.baseline_loss,
                                   network=best.network, tune_lr=True)
    return {"method": method, "seconds": seconds, "record": record, "expression": best.expression}


def _ms(mean, std) -> str:
    return "n/a" if mean is None else f"{mean:.4f} ± {std:.4f}"


def _p(p) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def row(task: str, r: dict) -> list[str]:
    """One line of the table."""
    label = catalog.METHODS[r["method"]].label
    m = r["record"]
    if m is None:
        return [task, label, f"{r['seconds']:.0f}", "no loss found", "", "", "", ""]
    t = m["tuned_lr"]
    tuned = (f"{_ms(t['learned_mean'], t['learned_std'])} (lr {t['learned_lr']:.3g}) vs "
             f"{_ms(t['baseline_mean'], t['baseline_std'])} (lr {t['baseline_lr']:.3g}); p {_p(t['p_value'])}, "
             f"{t['wins']}/{len(t['seeds'])}") if t["learned_lr"] and t["baseline_lr"] else "diverged"
    return [task, label, f"{r['seconds']:.0f}", _ms(m["learned_mean"], m["learned_std"]),
            _ms(m["baseline_mean"], m["baseline_std"]), _p(m["p_value"]), f"{m['wins']}/{len(m['seeds'])}", tuned]


HEADER = ["task", "method", "search s", "learned test metric", "baseline", "paired p", "better on",
          "at tuned learning rates: learned vs baseline"]


def print_table(rows: list[list[str]], header: list[str] = HEADER) -> None:
    """The table as Markdown, `header` first."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also digits28/LeNet-5")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets, to check that everything runs")
    parser.add_argument("--methods", default=",".join(catalog.METHODS), help="comma-separated method names")
    parser.add_argument("--tasks", default=None, help=f"comma-separated tasks (of {', '.join(TASKS)})")
    args = parser.parse_args(argv)
    b = budget(args.smoke)
    tasks = args.tasks.split(",") if args.tasks else [t for t in TASKS if args.full or t != "digits28/lenet5"]
    print(f"budget: {b}; metric: error rate (digits) / MSE (diabetes), lower is better")
    rows = []
    for task in tasks:
        for method in args.methods.split(","):
            rows.append(row(task, run_one(method, TASKS[task], b)))
            print(" | ".join(rows[-1]), flush=True)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
