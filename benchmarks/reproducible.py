"""Same configuration + seed -> the same search, on a quiet and on a loaded machine.

    python -m benchmarks.reproducible [--config configs/quick.json] [--burners 2]

Runs the search twice with default settings: once as the machine is, once while `--burners`
processes spin on the CPU. Prints the seconds per generation of both runs side by side and
whether the histories (minus wall-clock seconds), the best losses and the plans are
byte-identical as JSON; exits 1 if they are not.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _spin() -> None:
    while True:
        pass


def _run(config: str):
    from search_engine.study.driver import run_search

    return run_search(config).to_dict()


def _record(result: dict) -> str:
    history = [{k: v for k, v in g.items() if k != "seconds"} for g in result["history"]]
    return json.dumps({"history": history, "best": result["best"], "plan": result["plan"]}, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "quick.json"))
    parser.add_argument("--burners", type=int, default=2)
    args = parser.parse_args(argv)
    quiet = _run(args.config)
    burners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.burners)]
    for b in burners:
        b.start()
    try:
        loaded = _run(args.config)
    finally:
        for b in burners:
            b.terminate()
    print(f"| generation | quiet s | loaded ({args.burners} burners) s | ratio |")
    print("|---|---|---|---|")
    for q, lo in zip(quiet["history"], loaded["history"]):
        print(f"| {q['generation']} | {q['seconds']:.2f} | {lo['seconds']:.2f} | {lo['seconds'] / q['seconds']:.2f}x |")
    same = _record(quiet) == _record(loaded)
    print(f"history, best loss and plan byte-identical: {'yes' if same else 'NO'}")
    print(f"best: {quiet['best']['expression'] if quiet['best'] else None}; plan: {quiet['plan']}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
