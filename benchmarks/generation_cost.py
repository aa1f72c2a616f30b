"""Seconds per generation of the default fitness against the fixed-rate one and an earlier version.

    python -m benchmarks.generation_cost                       # quick.json and the LeNet-5 preset
    python -m benchmarks.generation_cost --against HEAD~5      # also that commit's code, side by side
    python -m benchmarks.generation_cost --against REF --only lenet --seeds 3 --repeats 1
    python -m benchmarks.generation_cost --smoke               # tiny: checks that everything runs

The tuned protocol (`training.lr_protocol`, scoring.protocol) adds work to every generation (a
gradient scale per candidate, a differentiable one in local search) and once per search (the
baseline trained at a few rates). This runs the same searches under each variant in separate
processes, one after another and alternating the order each repeat, so that a busy machine slows
each variant alike, and prints the median seconds per generation (generation 0 apart: it also
pays warm-up) with each variant's ratio to the first. The variants' searches differ (another rate
finds other losses, with other cache hits and rejections), so each row also gives the seconds per
candidate trained (neither a cache hit nor thrown out by the screen) in those generations: the cost
of the work, apart from how much work a search happened to have, and how many candidates each
generation trained on average. How many a generation trains depends on the search's path, so one
seed can make either variant look dearer; `--seeds N` times N searches of each (the mean seconds per
generation then weighs every generation alike). `--against REF` adds REF's code (checked out into a
temporary git worktree; its configurations run with the fields it knows) as the first variant:
"today's code" when REF is the last release.

Searches: configs/quick.json (digits / MLP) and the mnist_lenet5 preset's settings on digits28
(the bundled digits at 28 x 28: MNIST itself cannot be downloaded here) with its population, the
training steps and local search meta steps scaled down (--lenet-steps) so a generation takes
seconds rather than minutes on a CPU; every variant runs the same.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The search a child process runs: argv[1] = configuration JSON; prints per-generation seconds.
_CHILD = """
import collections, json, sys
from search_engine.config import load_config
from search_engine import run_search  # the package's entry point: the same name in earlier versions
trained = collections.Counter()
def count(event):  # a model trained for a candidate: not a cache hit, not thrown out by the screen
    if type(event).__name__ == "CandidateEvaluated" and not event.cache_hit and (
            event.rejection_reason is None or "during training" in event.rejection_reason):
        trained[event.generation] += 1
result = run_search(load_config(json.loads(sys.argv[1])), count)
print(json.dumps({"seconds": [g.seconds for g in result.history], "plan": result.plan,
                  "trained": [trained[g.generation] for g in result.history],
                  "best": result.best.expression if result.best else None}))
"""


def presets(generations: int, lenet_steps: int, smoke: bool) -> dict[str, dict]:
    """{name: configuration} of the searches measured."""
    quick = json.loads((ROOT / "configs" / "quick.json").read_text())
    quick["search"] = {**quick["search"], "generations": generations}
    lenet = json.loads((ROOT / "configs" / "mnist_lenet5.json").read_text())
    lenet["task"] = {"dataset": "digits28", "model": "lenet5", "val_fraction": 0.1}
    lenet["search"] = {**lenet["search"], "generations": generations}
    lenet["training"] = {**lenet["training"], "steps": lenet_steps}
    lenet["local_search"] = {**lenet["local_search"], "meta_steps": max(lenet_steps // 10, 2)}
    found = {"quick.json": quick, "mnist_lenet5 on digits28": lenet}
    if smoke:
        for config in found.values():
            config["search"] = {**config["search"], "population_size": 4, "generations": 2}
            config["training"] = {**config["training"], "steps": 20}
            config["local_search"] = {**config["local_search"], "meta_steps": 2}
            config["task"] = {**config["task"], "max_train": 200}
    for config in found.values():
        config["device"] = "cpu"
    return found


def with_protocol(config: dict, protocol: str | None) -> dict:
    """`config` with training.lr_protocol set (None: the field left out, for code that predates it)."""
    training = {k: v for k, v in config["training"].items() if k != "lr_protocol"}
    if protocol is not None:
        training["lr_protocol"] = protocol
    return {**config, "training": training}


def run_child(code_root: Path, config: dict) -> dict:
    """Run one search in a fresh interpreter on the code at `code_root`; its printed record."""
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(config)], cwd=code_root,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"search failed under {code_root}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def variants(against: Path | None) -> list[tuple[str, Path, str | None]]:
    """(label, code root, protocol) of each variant, the reference first."""
    out = [("fixed rate (the paper's protocol)", ROOT, "fixed"), ("tuned (default)", ROOT, "tuned")]
    if against is not None:
        out.insert(0, ("earlier code (fixed rate)", against, None))
    return out


def measure(configs: dict[str, dict], chosen: list[tuple[str, Path, str | None]], repeats: int,
            seeds: list[int] | None = None) -> dict:
    """{(preset, label): [per-generation seconds after generation 0, over every seed and repeat]}; also
    gen 0 and the candidates trained per generation. `seeds`: search seeds to run (None: the preset's)."""
    later: dict[tuple[str, str], list[float]] = {}
    first: dict[tuple[str, str], list[float]] = {}
    per_trained: dict[tuple[str, str], list[float]] = {}
    trained: dict[tuple[str, str], list[int]] = {}
    for name, config in configs.items():
        for i, seed in enumerate(seeds or [config.get("seed")]):
            seeded = config if seed is None else {**config, "seed": seed}
            for repeat in range(repeats):
                order = chosen if (i * repeats + repeat) % 2 == 0 else list(reversed(chosen))
                for label, root, protocol in order:
                    record = run_child(root, with_protocol(seeded, protocol))
                    first.setdefault((name, label), []).append(record["seconds"][0])
                    later.setdefault((name, label), []).extend(record["seconds"][1:])
                    trained.setdefault((name, label), []).extend(record["trained"][1:])
                    per_trained.setdefault((name, label), []).extend(
                        s / n for s, n in zip(record["seconds"][1:], record["trained"][1:], strict=True) if n > 0)
                    print(f"  {name} | {label} | seed {seed} repeat {repeat}: "
                          f"{[round(s, 2) for s in record['seconds']]} trained {record['trained']} "
                          f"best {record['best']}", flush=True)
    return {"later": later, "first": first, "per_trained": per_trained, "trained": trained}


def print_table(configs: dict, chosen: list, found: dict) -> None:
    print("| search | variant | median s / generation (after gen 0) | ratio | mean s / generation | ratio "
          "| candidates trained / generation | median s / trained candidate | ratio | median gen 0 s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in configs:
        reference = reference_mean = reference_trained = None
        for label, _, _ in chosen:
            seconds = found["later"].get((name, label)) or [float("nan")]
            median, mean = statistics.median(seconds), statistics.fmean(seconds)
            trained = statistics.median(found["per_trained"].get((name, label)) or [float("nan")])
            count = statistics.fmean(found["trained"].get((name, label)) or [float("nan")])
            reference = median if reference is None else reference
            reference_mean = mean if reference_mean is None else reference_mean
            reference_trained = trained if reference_trained is None else reference_trained
            per = "n/a | n/a" if math.isnan(trained) else f"{trained:.3f} | {trained / reference_trained:.2f}x"
            print(f"| {name} | {label} | {median:.2f} | {median / reference:.2f}x | {mean:.2f} | "
                  f"{mean / reference_mean:.2f}x | {count:.1f} | {per} | "
                  f"{statistics.median(found['first'][(name, label)]):.2f} |")


def worktree(ref: str) -> Path:
    """A temporary git worktree of `ref` (removed by the caller)."""
    path = Path(tempfile.mkdtemp(prefix="lfl-ref-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT, check=True,
                   capture_output=True)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default=None, help="a git ref whose code runs as the first variant")
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lenet-steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=None,
                        help="run search seeds 0..N-1 (the trained candidates per generation, and so the seconds, "
                        "differ from one search to another); default: each preset's own seed")
    parser.add_argument("--only", default=None, help="one search of the table: quick.json or lenet")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    configs = presets(args.generations, args.lenet_steps, args.smoke)
    if args.only:
        configs = {name: c for name, c in configs.items() if args.only.lower() in name.lower()}
        if not configs:
            parser.error(f"--only {args.only!r} names none of: quick.json, lenet")
    against = worktree(args.against) if args.against else None
    try:
        chosen = variants(against)
        found = measure(configs, chosen, 1 if args.smoke else args.repeats,
                        None if args.seeds is None else list(range(args.seeds)))
        print_table(configs, chosen, found)
    finally:
        if against is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(against)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
