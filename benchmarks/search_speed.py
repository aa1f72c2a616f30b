"""Search speed: sequential vs batched candidate evaluation, side by side in one run.

    python -m benchmarks.search_speed            # full EvoMAL-size figures (~10 min on 2 CPU cores)
    python -m benchmarks.search_speed --quick    # a few minutes: fewer steps, extrapolated per step

One table: per-step training time for populations of P = 1, 8, 25 (MLP on 8x8 digits, LeNet-5
on digits28 = the digits upsampled to 28x28), with the useful GFLOP/s of each path against the
machine's measured fp32 matmul rate; per-candidate seconds of the rejection screen, local
search and fitness at EvoMAL's LeNet-5 settings beside the reference implementation's
figures; seconds per generation of configs/quick.json and of a LeNet-5 preset with local
search on and off (six candidates that all pass the screen: the worst case), and of the LeNet-5
preset as a search runs it (run_search on 25 per generation, where the rejection screen and the
equivalence cache spare most candidates the local search), scaled to six candidates; the peak memory of each path ("peak A / B MiB": sequential / batched, the
memory the measurement adds: RSS growth on the CPU, allocator peak on CUDA). Rows marked "x" were measured with fewer
steps and scaled linearly (every step costs the same).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from search_engine.config import ExperimentConfig, load_config
from search_engine.evolution.events import GenerationFinished
from search_engine.expr.losses import make_loss
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, parse
from search_engine.population.local_search import local_search_population
from search_engine.population.networks import population_model
from search_engine.population.training import population_loss, stacked_copies, train_population
from search_engine.runtime.allocator import keep_freed_memory
from search_engine.scoring.batched import BatchedEvaluator, Plan
from search_engine.scoring.local_search import local_search
from search_engine.scoring.plan import make_evaluator
from search_engine.scoring.sequential import SequentialEvaluator
from search_engine.study.driver import run_search
from search_engine.tasks.task import Task, load_task
from search_engine.tasks.training import train

ROOT = Path(__file__).resolve().parents[1]

# Reference implementation (EvoMAL, LeNet-5, 2 CPU cores), seconds.
REF_LOCAL_SEARCH, REF_FITNESS, REF_GENERATION = 15.0, 10.0, 96.0

# A mix of candidate losses of different sizes, cycled over the population.
LOSSES = [
    CROSS_ENTROPY, SQUARED_ERROR, parse("sqrt(abs(sub(f, y)))"),
    parse("add(square(sub(f, y)), mul(-1, mul(y, log(f))))"), parse("mul(-1, mul(y, log(add(f, square(f)))))"),
    parse("abs(sub(f, y))"),
]


def lenet_preset(*, local: bool, meta_steps: int = 250, steps: int = 500, population: int = 6) -> dict:
    """EvoMAL's LeNet-5 settings (configs/mnist_lenet5.json) on digits28, one small generation."""
    return {
        "task": {"dataset": "digits28", "model": "lenet5"},
        "search": {"population_size": population, "generations": 1},
        "training": {"steps": steps, "batch_size": 128, "lr": 0.01, "momentum": 0.9, "nesterov": True,
                     "weight_decay": 0.0005},
        "rejection": {"steps": 100, "samples": 100},
        "local_search": {"mode": "all" if local else "off", "meta_steps": meta_steps, "batch_size": 128},
        "seed": 0, "device": "auto",
    }


# ------------------------------------------------------------------ measuring


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: bool = True) -> float:
    """Fastest of `repeats` timed calls after one warm-up call (robust to a busy machine)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(device: torch.device, n: int = 2048) -> float:
    """The machine's fp32 matrix-multiply rate (GFLOP/s): the useful-throughput ceiling."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / best_seconds(lambda: a @ b, device, repeats=5) / 1e9


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-add FLOPs (x2) of the Linear and Conv2d layers in one forward pass on x."""
    total = 0

    def hook(module, _inputs, out) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2 * out.numel() * module.in_features
        elif isinstance(module, nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += 2 * out.numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


class PeakMemory:
    """Peak memory a block adds: the GPU allocator's peak on CUDA; on the CPU (Linux) the peak RSS
    above the RSS at entry, after returning the allocator's free memory to the system."""

    def __init__(self, device: torch.device):
        self.device, self.mib = device, 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            _trim_heap()
            _reset_peak_rss()
            self.base = _rss_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        else:
            self.mib = max(0, _rss_kib("VmHWM") * 1024 - self.base) / 2**20


def _trim_heap() -> None:
    """glibc's malloc_trim(0): free heap pages go back to the system, so RSS growth is real use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _rss_kib(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return 0


# ------------------------------------------------------------------ the measurements


#: torch threads of every measured configuration (--threads; load_task sets a configuration's own).
THREADS = 2


def _config(dataset: str, model: str, **training) -> ExperimentConfig:
    return load_config({"task": {"dataset": dataset, "model": model}, "evaluation": {"threads": THREADS},
                        "training": {"batch_size": 128, "lr": 0.01, **training}, "device": "auto"})


def _sequential_seconds(task: Task, tree, cfg) -> float:
    """Fastest of three `tasks.training.train` runs of one fresh model (model construction not timed)."""
    times = []
    for _ in range(4):
        model = task.new_model(0)
        sync(task.device)
        start = time.perf_counter()
        train(model, make_loss(tree, task.kind), task.splits.x_train, task.splits.y_train, cfg)
        sync(task.device)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def _population_seconds(task: Task, trees, cfg) -> float:
    """Fastest of three `train_population` runs of fresh stacked copies (stacking not timed)."""
    template, loss = task.new_model(0), population_loss(trees, task.kind)
    model, times = population_model(template), []
    for _ in range(4):
        params, buffers = stacked_copies(template, len(trees))
        sync(task.device)
        start = time.perf_counter()
        train_population(model, params, buffers, loss, task.splits.x_train, task.splits.y_train, cfg)
        sync(task.device)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def step_rows(task: Task, label: str, sizes: list[int], steps: int, floor: float) -> list[list[str]]:
    """Per-step time of P separate trainings vs one population program, for each P."""
    cfg = dataclasses.replace(_config("digits", "mlp").training, steps=steps)
    s, dev = task.splits, task.device
    flops = 3 * forward_flops(task.new_model(0), s.x_train[: cfg.batch_size])  # per member-step
    with PeakMemory(dev) as seq_mem:
        seq_one = [_sequential_seconds(task, t, cfg) / steps for t in LOSSES]
    rows = []
    for p in sizes:
        trees = [LOSSES[i % len(LOSSES)] for i in range(p)]
        seq = sum(seq_one[i % len(LOSSES)] for i in range(p))
        with PeakMemory(dev) as mem:
            bat = _population_seconds(task, trees, cfg) / steps
        rate = [p * flops / t / 1e9 for t in (seq, bat)]
        rows.append([f"{label} train step, P={p}", f"{seq * 1e3:.1f} ms", f"{bat * 1e3:.1f} ms",
                     f"{seq / bat:.2f}x", f"{rate[0]:.1f} / {rate[1]:.1f} ({rate[0] / floor:.0%} / {rate[1] / floor:.0%})",
                     f"peak {seq_mem.mib:.0f} / {mem.mib:.0f} MiB"])
    return rows


def candidate_rows(quick: bool) -> tuple[list[list[str]], tuple[float, float, float]]:
    """Per-candidate seconds of rejection, local search and fitness at EvoMAL's LeNet-5 settings."""
    meta, steps = (10, 40) if quick else (250, 500)
    full = lenet_preset(local=True)
    config = load_config({**full, "training": {**full["training"], "steps": steps},
                          "local_search": {**full["local_search"], "meta_steps": meta},
                          "evaluation": {**full.get("evaluation", {}), "threads": THREADS}})
    task = load_task(config)
    seq = SequentialEvaluator(task, config)
    bat = BatchedEvaluator(task, config, Plan(len(LOSSES), 2, "benchmark"))
    n, dev = len(LOSSES), task.device
    ls_scale, fit_scale = 250 / meta, 500 / steps
    rej_s = best_seconds(lambda: [seq.screen(t) for t in LOSSES], dev, 2) / n
    rej_b = best_seconds(lambda: bat.screen_many(LOSSES), dev, 2) / n
    once = {"repeats": 1, "warmup": quick}  # full-size runs are long: timed once, no warm-up
    ls_s = best_seconds(lambda: local_search(task, LOSSES[0], config.local_search, config.training, 0), dev, **once)
    with PeakMemory(dev) as mem_ls:
        ls_b = best_seconds(lambda: local_search_population(task, LOSSES, config.local_search, config.training, 0),
                            dev, **once) / n
    with PeakMemory(dev) as mem_unrolled:
        ls_u = best_seconds(lambda: local_search_population(task, LOSSES, config.local_search, config.training, 0,
                                                            unrolled=True), dev, **once) / n
    with PeakMemory(dev) as mem_seq:
        fit_s = best_seconds(lambda: seq.fitness(LOSSES[0]), dev, **once)
    with PeakMemory(dev) as mem_fit:
        fit_b = best_seconds(lambda: bat.fitness_many(LOSSES, [None] * n), dev, **once) / n
    mark = lambda scale: f" (x{scale:g})" if scale != 1 else ""  # noqa: E731
    return [
        ["LeNet-5 rejection, s/candidate", f"{rej_s:.3f}", f"{rej_b:.3f}", f"{rej_s / rej_b:.2f}x", "", "100 Adam steps"],
        [f"LeNet-5 local search, s/candidate{mark(ls_scale)}", f"{ls_s * ls_scale:.2f}", f"{ls_b * ls_scale:.2f}",
         f"{ls_s / ls_b:.2f}x", "", f"ref ~{REF_LOCAL_SEARCH:g} s; P={n}, peak batched {mem_ls.mib:.0f} MiB"],
        [f"LeNet-5 batched local search, unrolled vs shared start, s/candidate{mark(ls_scale)}",
         f"{ls_u * ls_scale:.2f}", f"{ls_b * ls_scale:.2f}", f"{ls_u / ls_b:.2f}x", "",
         f"same meta-gradient; columns: unrolled / shared start; P={n}, peak {mem_unrolled.mib:.0f} / {mem_ls.mib:.0f} MiB"],
        [f"LeNet-5 fitness, s/candidate{mark(fit_scale)}", f"{fit_s * fit_scale:.2f}", f"{fit_b * fit_scale:.2f}",
         f"{fit_s / fit_b:.2f}x", "", f"ref ~{REF_FITNESS:g} s; P={n}, peak {mem_seq.mib:.0f} / {mem_fit.mib:.0f} MiB"],
    ], (rej_b, ls_b * ls_scale, fit_b * fit_scale)


def search_generation(config: str | dict, strategy: str, generations: int = 1) -> tuple[float, list[GenerationFinished], str]:
    """Wall-clock seconds per generation of run_search's first `generations` (task loading and the
    baseline excluded), the generations' events and the evaluation plan."""
    cfg = load_config(config)
    cfg = dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, generations=generations),
                              evaluation=dataclasses.replace(cfg.evaluation, strategy=strategy, threads=THREADS))
    events = []
    result = run_search(cfg, events.append)
    gens = [e for e in events if isinstance(e, GenerationFinished)]
    plan = result.plan or {}
    return (sum(g.seconds for g in gens) / len(gens), gens,
            f"chunk {plan['chunk']}" if plan.get("strategy") == "batched" else "sequential")


def lenet_search_preset(quick: bool) -> dict:
    """configs/mnist_lenet5.json as shipped (25 per generation, local search on every accepted candidate),
    on digits28 (the same 28x28 shape; MNIST itself cannot be downloaded here)."""
    preset = json.loads((ROOT / "configs" / "mnist_lenet5.json").read_text())
    preset["task"] = {"dataset": "digits28", "model": "lenet5"}
    if quick:
        preset["training"]["steps"] = 50
        preset["local_search"] = {"meta_steps": 25}
    return preset


def evaluate_seconds(config: dict, strategy: str) -> tuple[float, str]:
    """Seconds of one `evaluate` call on the six benchmark losses (all pass the screen): one generation's work."""
    cfg = load_config({**config, "evaluation": {"strategy": strategy, "threads": THREADS}})
    task = load_task(cfg)
    ev = make_evaluator(task, cfg)
    sync(task.device)
    start = time.perf_counter()
    outcomes = ev.evaluate(LOSSES)
    sync(task.device)
    trained = sum(o.ok for o in outcomes)
    plan = getattr(ev, "plan", None)
    return time.perf_counter() - start, f"{trained}/{len(LOSSES)} trained; {'chunk ' + str(plan.chunk) if plan else 'seq.'}"


def generation_rows(quick: bool, per_candidate: tuple[float, float, float]) -> list[list[str]]:
    """Seconds per generation: configs/quick.json (run_search) and the LeNet-5 preset (6 candidates)."""
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with PeakMemory(dev) as seq_mem:
        seq, (gen,), _ = search_generation(str(ROOT / "configs" / "quick.json"), "sequential")
    with PeakMemory(dev) as mem:
        bat, _, plan = search_generation(str(ROOT / "configs" / "quick.json"), "auto")
    rows = [["configs/quick.json, s/generation", f"{seq:.1f}", f"{bat:.1f}", f"{seq / bat:.2f}x", "",
             f"auto: {plan}; {gen.evaluated - gen.rejected}/{gen.evaluated} trained; peak {seq_mem.mib:.0f} / {mem.mib:.0f} MiB"]]
    # The preset as a search runs it: the rejection screen and the equivalence cache come before
    # local search, so only accepted, new candidates are refined and trained (the reference refines
    # all six and then rejects most of them). Seconds per 25 scaled to a generation of 6.
    gens_n = 1 if quick else 2
    preset = lenet_search_preset(quick)
    seq, _, _ = search_generation(preset, "sequential", gens_n)
    with PeakMemory(dev) as mem:
        bat, gens, plan = search_generation(preset, "auto", gens_n)
    counts = "; ".join(f"gen {g.generation}: {g.evaluated - g.rejected}/{g.evaluated} accepted, "
                       f"{g.cache_hits} cache hits" for g in gens)
    scale = 6 / preset["search"]["population_size"]
    size = " (25 meta / 50 steps)" if quick else ""
    ref = "" if quick else f"ref ~{REF_GENERATION:g} s, target <= {REF_GENERATION / 5:.1f} s; "
    rows.append([f"LeNet-5 preset search, LS on, s per 6 candidates{size}", f"{seq * scale:.1f}",
                 f"{bat * scale:.1f}", f"{seq / bat:.2f}x", "",
                 f"{ref}run_search, {gens_n} generation(s) of 25 on digits28, auto: {plan}; {counts}; peak {mem.mib:.0f} MiB"])
    meta, steps = (25, 50) if quick else (250, 500)
    for local in (True, False):
        preset = lenet_preset(local=local, meta_steps=meta, steps=steps)
        size = f" ({meta} meta / {steps} steps)" if quick and local else f" ({steps} steps)" if quick else ""
        with PeakMemory(dev) as seq_mem:
            seq, _ = evaluate_seconds(preset, "sequential")
        with PeakMemory(dev) as mem:
            bat, note = evaluate_seconds(preset, "auto")
        # Worst case, every candidate passes the screen: the reference then refines and trains all six.
        worst = 6 * (REF_LOCAL_SEARCH + REF_FITNESS)
        ref = f"worst case, all pass the screen: ref ~{worst:g} s (6 x (LS + fitness)); " if local and not quick else ""
        rows.append([f"LeNet-5 preset, LS {'on' if local else 'off'}, s/generation of 6{size}", f"{seq:.1f}",
                     f"{bat:.1f}", f"{seq / bat:.2f}x", "", f"{ref}{note}; peak {seq_mem.mib:.0f} / {mem.mib:.0f} MiB"])
    if quick:
        rej, ls, fit = per_candidate
        rows.append(["LeNet-5 preset, LS on, s/generation of 6, est.", "", f"{6 * (rej + ls + fit):.1f}", "", "",
                     f"6 x (rejection + LS + fitness per candidate, 250 / 500 steps); ref ~{REF_GENERATION:g} s, "
                     f"target <= {REF_GENERATION / 5:.1f} s"])
    return rows


# ------------------------------------------------------------------ the table


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (a few minutes); scaled figures")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--skip-generations", action="store_true", help="leave out the run_search rows")
    args = parser.parse_args(argv)
    global THREADS
    THREADS = args.threads
    torch.set_num_threads(args.threads)
    tuned = keep_freed_memory()  # as run_search does, for both paths alike
    device = load_task(_config("digits", "logistic")).device
    floor = matmul_gflops(device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"lfl search speed: torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, "
          f"fp32 matmul {floor:.1f} GFLOP/s (2048^3), load average {load:.2f} at start"
          f"{', --quick' if args.quick else ''}, glibc keeps freed memory: {tuned}")
    rows = step_rows(load_task(_config("digits", "mlp")), "MLP digits", [1, 8, 25], 30 if args.quick else 100, floor)
    rows += step_rows(load_task(_config("digits28", "lenet5")), "LeNet-5 digits28", [1, 8, 25],
                      3 if args.quick else 10, floor)
    cand, per_candidate = candidate_rows(args.quick)
    rows += cand
    if not args.skip_generations:
        rows += generation_rows(args.quick, per_candidate)
    print_table(["measurement", "sequential", "batched", "speedup", "useful GFLOP/s seq / batched (% of matmul)",
                 "reference / notes"], rows)
    print(f"load average at end {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")


if __name__ == "__main__":
    main()
