"""Choosing how candidates are scored, and the batched evaluator.

`make_evaluator(task, config)` is the search's default evaluator factory. `evaluation.strategy`:

* "sequential" - `SequentialEvaluator`, one candidate after another.
* "batched" - `BatchedEvaluator` with chunks of `evaluation.max_population_chunk` candidates.
* "auto" (default) - a short measurement on the task itself (`measure_plan`): a few training
  steps of the sequential path and of populations of 2, 8 and max_population_chunk members,
  with the task's model, batch size and device. The cheapest per-candidate population size
  becomes the chunk; smaller groups than the break-even size (interpolated between the
  measured sizes) are trained sequentially, and if no size beats the sequential path the
  evaluator is sequential - so "auto" is never slower than sequential, up to the
  measurement's noise. One rule skips the measurement: models without a dedicated batched
  formulation (vmapped BatchNorm networks: resnet18, wideresnet) are sequential on the CPU,
  where vmapped convolutions lose.

The rejection screen of a chunk always runs batched (it only optimizes logits). Local search
uses the same population sizes, capped by `batched_meta.meta_chunk` (memory). A stop request
is noticed between chunks and, through `interrupt.check`, every few steps inside a chunk's
training or local search, so a large chunk does not delay a stop.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from search_engine.batched import fitness_population, population_loss, screen_population, train_population
from search_engine.batched_meta import local_search_population, meta_chunk
from search_engine.batched_models import is_chain, population_model
from search_engine.config import ExperimentConfig
from search_engine.evaluation import TRAINING_DIVERGED, Outcome, SequentialEvaluator
from search_engine.expression import CROSS_ENTROPY, SQUARED_ERROR, Node
from search_engine.losses import make_loss
from search_engine.meta import local_search
from search_engine.tasks import Task
from search_engine.training import train

_MEASURE_STEPS = 3


@dataclass(frozen=True)
class Plan:
    """How a BatchedEvaluator trains: populations of `min_batch`..`chunk` members, fewer run sequentially."""

    chunk: int  # most candidates per program (the evaluator's chunk_size)
    min_batch: int  # fewer pending candidates than this are trained one by one
    reason: str  # how it was decided, for logs and the benchmark


def make_evaluator(task: Task, config: ExperimentConfig, saved_plan: dict | None = None):
    """The evaluator `config.evaluation.strategy` asks for (see the module doc).

    With strategy "auto" and `saved_plan` (the `plan_record` of an earlier run of this search
    on the same kind of device, kept in its checkpoint), that plan is reused instead of timing
    the machine again, so a resumed search keeps the evaluation path it started with.
    """
    ev = config.evaluation
    if ev.strategy == "sequential":
        return SequentialEvaluator(task, config)
    if ev.strategy == "batched":
        return BatchedEvaluator(task, config, Plan(ev.max_population_chunk, 2, "configured: batched"))
    if saved_plan is not None and saved_plan.get("device") == task.device.type:
        if saved_plan.get("strategy") == "sequential":
            return SequentialEvaluator(task, config)
        if saved_plan.get("strategy") == "batched":
            return BatchedEvaluator(task, config, Plan(int(saved_plan["chunk"]), int(saved_plan["min_batch"]),
                                                       f"reused from the checkpoint ({saved_plan.get('reason', '')})"))
    plan = measure_plan(task, config)
    return SequentialEvaluator(task, config) if plan is None else BatchedEvaluator(task, config, plan)


def plan_record(evaluator, device: torch.device) -> dict:
    """How `evaluator` scores candidates, as JSON for the checkpoint, the result and the event stream."""
    plan = getattr(evaluator, "plan", None)
    if isinstance(plan, Plan):
        return {"strategy": "batched", "chunk": plan.chunk, "min_batch": plan.min_batch, "reason": plan.reason,
                "device": device.type}
    if type(evaluator) is SequentialEvaluator:
        return {"strategy": "sequential", "device": device.type}
    return {"strategy": type(evaluator).__name__, "device": device.type}  # a custom evaluator_factory


class BatchedEvaluator(SequentialEvaluator):
    """`SequentialEvaluator`'s interface and results, with whole chunks screened and trained at once.

    Single-candidate calls (`fitness`, `refine`, used for the baseline and top-k refinement)
    and chunks smaller than `plan.min_batch` take the sequential path.
    """

    def __init__(self, task: Task, config: ExperimentConfig, plan: Plan):
        super().__init__(task, config)
        self.plan = plan
        self.chunk_size = plan.chunk

    def screen_many(self, trees: Sequence[Node]) -> list[str | None]:
        """The rejection protocol for all `trees` in one program."""
        rej = self.config.rejection
        if not rej.enabled:
            return [None] * len(trees)
        return screen_population(trees, self.task.kind, self._screen_targets, self._screen_start,
                                 steps=rej.steps, lr=self.config.training.lr)

    def fitness_many(self, trees: Sequence[Node], weights: Sequence[tuple[float, ...] | None]) -> list[Outcome]:
        """`fitness` of each tree (with its weights), in population programs of at most `plan.chunk`."""
        return _in_chunks(self._fitness_chunk, list(zip(trees, weights)), self.plan.chunk)

    def _fitness_chunk(self, items: list[tuple[Node, tuple[float, ...] | None]]) -> list[Outcome]:
        """One population program (or the sequential path for fewer than `plan.min_batch`)."""
        if len(items) < self.plan.min_batch:
            return [self.fitness(t, w) for t, w in items]
        cfg, dev = self.config, self.task.device
        trees, weights = [t for t, _ in items], [w for _, w in items]
        tensors = [None if w is None else torch.tensor(w, dtype=torch.float32, device=dev) for w in weights]
        loss = population_loss(trees, self.task.kind, tensors)
        values = fitness_population(self.task.new_model(cfg.seed), loss, len(trees), self.task.splits,
                                    self.task.kind, cfg.training, cfg.seed)
        return [Outcome(v, None, w) if v is not None else Outcome(None, TRAINING_DIVERGED, w)
                for v, w in zip(values, weights)]

    def refine_many(self, trees: Sequence[Node]) -> list[Outcome]:
        """Local search for every tree (in memory-sized chunks), then fitness with the learned weights."""
        size = meta_chunk(self.task, self.config.local_search, self.plan.chunk)
        found = _in_chunks(self._local_search_chunk, list(trees), size)
        return self.fitness_many(trees, [f.weights for f in found])

    def _local_search_chunk(self, trees: list[Node]) -> list:
        """One batched local search (or per-candidate ones for fewer than `plan.min_batch`)."""
        cfg = self.config
        if len(trees) < self.plan.min_batch:
            return [local_search(self.task, t, cfg.local_search, cfg.training, seed=cfg.seed) for t in trees]
        return local_search_population(self.task, trees, cfg.local_search, cfg.training, cfg.seed)

    def evaluate(self, trees: Sequence[Node]) -> list[Outcome]:
        """Screen all, then (local search when mode is "all") and train the survivors together."""
        trees = list(trees)
        reasons = self.screen_many(trees) if len(trees) > 1 else [self.screen(t) for t in trees]
        keep = [i for i, r in enumerate(reasons) if not r]
        survivors = [trees[i] for i in keep]
        if self.config.local_search.mode == "all":
            scored = self.refine_many(survivors)
        else:
            scored = self.fitness_many(survivors, [None] * len(survivors))
        outcomes = [Outcome(None, r) for r in reasons]
        for i, outcome in zip(keep, scored):
            outcomes[i] = outcome
        return outcomes


def _in_chunks(fn: Callable[[list], list], items: list, size: int) -> list:
    """`fn` over consecutive chunks of at most `size` items; a chunk that runs out of GPU memory is halved."""
    out: list = []
    for i in range(0, len(items), size):
        out += _halving_on_oom(fn, items[i : i + size])
    return out


def _halving_on_oom(fn: Callable[[list], list], part: list) -> list:
    """fn(part), or fn on each half (recursively) if the GPU runs out of memory."""
    try:
        return fn(part)
    except torch.cuda.OutOfMemoryError:
        if len(part) == 1:
            raise
        torch.cuda.empty_cache()
        half = len(part) // 2
        return _halving_on_oom(fn, part[:half]) + _halving_on_oom(fn, part[half:])


# ------------------------------------------------------------------ the measurement


def _probe_loss(task: Task) -> Node:
    """The baseline loss of the task kind: a representative candidate for timing."""
    return CROSS_ENTROPY if task.kind == "classification" else SQUARED_ERROR


def _sequential_step_seconds(task: Task, config: ExperimentConfig) -> float:
    """Seconds per training step of the sequential path (best of two short runs, after a warm-up)."""
    s, tree = task.splits, _probe_loss(task)
    cfg = dataclasses.replace(config.training, steps=_MEASURE_STEPS)
    times = []
    for _ in range(3):
        model = task.new_model(config.seed)
        start = time.perf_counter()
        train(model, make_loss(tree, task.kind), s.x_train, s.y_train, cfg, data_seed=config.seed)
        times.append(time.perf_counter() - start)
    return min(times[1:]) / _MEASURE_STEPS


def _population_step_seconds(task: Task, config: ExperimentConfig, p: int) -> float:
    """Seconds per training step of a population of `p` (best of two short runs, after a warm-up)."""
    from search_engine.batched import stacked_copies

    s = task.splits
    cfg = dataclasses.replace(config.training, steps=_MEASURE_STEPS)
    loss = population_loss([_probe_loss(task)] * p, task.kind)
    template = task.new_model(config.seed)
    model = population_model(template)
    times = []
    for _ in range(3):
        params, buffers = stacked_copies(template, p)
        _sync(task.device)
        start = time.perf_counter()
        train_population(model, params, buffers, loss, s.x_train, s.y_train, cfg, data_seed=config.seed)
        _sync(task.device)
        times.append(time.perf_counter() - start)
    return min(times[1:]) / _MEASURE_STEPS


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times mean something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ladder(max_chunk: int) -> list[int]:
    """Population sizes to time: 2, 8 and the configured maximum (those not above it)."""
    return sorted({min(p, max_chunk) for p in (2, 8, max_chunk)} - {1})


def measure_plan(task: Task, config: ExperimentConfig) -> Plan | None:
    """Time sequential vs batched training on this task; None means sequential is the faster choice."""
    max_chunk = config.evaluation.max_population_chunk
    template = task.new_model(config.seed)
    if max_chunk < 2:
        return None
    if not is_chain(template) and task.device.type == "cpu":
        return None  # documented rule: vmapped (BatchNorm) networks are slower batched on the CPU
    seq = _sequential_step_seconds(task, config)
    per_candidate = {}
    for p in _ladder(max_chunk):
        try:
            per_candidate[p] = _population_step_seconds(task, config, p) / p
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
    faster = [p for p, t in per_candidate.items() if t < seq]
    if not faster:
        return None
    best = min(faster, key=lambda p: per_candidate[p])
    timings = ", ".join(f"P={p}: {t * 1e3:.2f} ms" for p, t in per_candidate.items())
    reason = f"measured per-candidate step: sequential {seq * 1e3:.2f} ms, {timings}"
    return Plan(chunk=best, min_batch=_break_even(per_candidate, seq, min(faster)), reason=reason)


def _break_even(per_candidate: dict[int, float], seq: float, first_faster: int) -> int:
    """Smallest population worth batching: where the per-candidate time, linearly interpolated
    between the last slower and the first faster measured size, drops below sequential."""
    slower = [p for p in per_candidate if p < first_faster]
    if not slower:
        return first_faster
    p0, p1 = max(slower), first_faster
    t0, t1 = per_candidate[p0], per_candidate[p1]
    return min(p1, math.floor(p0 + (t0 - seq) / (t0 - t1) * (p1 - p0)) + 1)
