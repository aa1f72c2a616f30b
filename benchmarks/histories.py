"""Fingerprints of every method's search history: a change of structure must keep every result.

    python -m benchmarks.histories --write runs/histories.json   # record today's histories
    python -m benchmarks.histories --check runs/histories.json   # run again, compare, exit 1 on a difference
    python -m benchmarks.histories --only quick.json --check F   # one search of the list

Runs configs/quick.json (EvoMAL), the same as GP-LFL, the ML3, TaylorGLO and random-search presets as shipped,
and small versions of the LeNet-5 preset (on digits28) and of the regression preset (diabetes) with
each method, each through the engine's entry point for any method. A search's record is what its run decides -
the history without wall-clock seconds, the hall of fame, the counts, the plan, the baseline's
fitness and the status - and its fingerprint is the SHA-256 of that record as sorted JSON. The
table lists, per search, the seconds it took and whether its record is byte-identical to the file's;
for a difference it names the first generation (or field) that differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _preset(name: str) -> dict:
    return json.loads((ROOT / "configs" / name).read_text())


def _small(config: dict, **task) -> dict:
    """`config` cut to seconds: 2 generations of 6, short training and local search."""
    config = dict(config)
    config["task"] = {**config["task"], **task}
    config["search"] = {**config.get("search", {}), "population_size": 6, "generations": 2}
    config["training"] = {**config.get("training", {}), "steps": 60}
    config["rejection"] = {"steps": 30, "samples": 50}
    config["local_search"] = {**config.get("local_search", {}), "meta_steps": 5}
    config["meta_test"] = {"steps": 100, "seeds": 2}
    return config


def searches() -> dict[str, dict]:
    """{name: configuration} of every search fingerprinted."""
    quick = _preset("quick.json")
    lenet = _small(_preset("mnist_lenet5.json"), dataset="digits28", data_root=None)
    lenet["task"].pop("data_root")
    diabetes = _small(_preset("diabetes_mlp.json"))
    ml3_small = {"meta_steps": 12, "report_every": 4, "hidden_units": 8, "batch_size": 64}
    return {
        "quick.json": quick,
        "quick.json as gplfl": {**quick, "method": "gplfl"},
        "ml3_digits.json": _preset("ml3_digits.json"),
        "taylorglo_digits.json": _preset("taylorglo_digits.json"),
        "random_digits.json": _preset("random_digits.json"),
        "mnist_lenet5 on digits28, small": lenet,
        "diabetes_mlp, small": diabetes,
        "diabetes_mlp as gplfl, small": {**diabetes, "method": "gplfl"},
        "diabetes_mlp as random, small": {**diabetes, "method": "random"},
        "diabetes_mlp as ml3, small": {**diabetes, "method": "ml3", "ml3": ml3_small},
        "diabetes_mlp as taylorglo, small": {
            **diabetes, "method": "taylorglo", "taylorglo": {"population_size": 5, "generations": 2}},
    }


def record_of(result: dict) -> dict:
    """What a search decided: its result without wall-clock seconds."""
    history = [{k: v for k, v in g.items() if k != "seconds"} for g in result["history"]]
    keep = ("status", "best", "hall_of_fame", "totals", "baseline_loss", "baseline_fitness", "plan")
    return {"history": history, **{k: result[k] for k in keep}}


def fingerprint(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def run(config: dict) -> tuple[dict, float]:
    """(record, seconds) of one search."""
    from search_engine.study.driver import run_search

    started = time.perf_counter()
    result = run_search(config).to_dict()
    return record_of(result), time.perf_counter() - started


def first_difference(a: dict, b: dict) -> str:
    """Where two records first differ, in words."""
    for i, (ga, gb) in enumerate(zip(a["history"], b["history"])):
        if ga != gb:
            fields = sorted(k for k in set(ga) | set(gb) if ga.get(k) != gb.get(k))
            return f"generation {i}: {', '.join(fields)}"
    if len(a["history"]) != len(b["history"]):
        return f"{len(a['history'])} vs {len(b['history'])} generations"
    return ", ".join(sorted(k for k in a if a[k] != b.get(k))) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, help="record the histories into this file")
    mode.add_argument("--check", type=Path, help="compare with the histories recorded in this file")
    parser.add_argument("--only", action="append", help="run only this search (repeatable)")
    args = parser.parse_args(argv)
    chosen = {k: v for k, v in searches().items() if not args.only or k in args.only}
    recorded = json.loads(args.check.read_text()) if args.check else {}
    out, same_everywhere = {}, True
    print("| search | seconds | fingerprint | same as recorded |")
    print("|---|---|---|---|")
    for name, config in chosen.items():
        record, seconds = run(config)
        out[name] = record
        if args.check:
            before = recorded.get(name)
            same = before is not None and fingerprint(before) == fingerprint(record)
            same_everywhere &= same
            verdict = "yes" if same else ("not recorded" if before is None else "NO: " + first_difference(before, record))
        else:
            verdict = "(recorded)"
        print(f"| {name} | {seconds:.1f} | {fingerprint(record)[:12]} | {verdict} |", flush=True)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(out, sort_keys=True, indent=1))
    return 0 if same_everywhere else 1


if __name__ == "__main__":
    sys.exit(main())
