"""Choosing how candidates are scored: the evaluation plan of a configuration.

`make_evaluator(task, config)` is the search's default evaluator factory. `evaluation.strategy`:

* "auto" (default) - `default_plan`: a fixed rule of the model family and the kind of device,
  never a timing, so the same configuration and seed give the same history on a busy and on a
  quiet machine. The rule rests on the per-step table of `python -m benchmarks.search_speed`
  (populations of P = 1, 8, 25 against sequential steps, MLP and LeNet-5, 2-core CPU), where a
  population step of P = 25 beat 25 sequential steps in every run - MLP by 2.2-4.2x, LeNet-5 by
  1.6-2.4x (rerun it to check the rule on other hardware) - so chain models (no BatchNorm: mlp,
  lenet5, allcnnc, ...) are batched in chunks of `max_population_chunk`, groups of 2 and more
  trained together. Models without a dedicated batched formulation (vmapped BatchNorm networks:
  resnet18, wideresnet) are sequential on the CPU, where vmapped convolutions lose. On a CUDA
  device every model is batched in chunks of `max_population_chunk` (one kernel launch per layer
  for the whole chunk). A plugin's model is batched by the same rule when its layers are a chain
  (`population.networks.chain_obstacle`); otherwise, on a CUDA device, when a vmapped forward and
  backward of two members runs (else sequential). A sequential choice's plan record says why.
* "measure" - `measure_plan`: a short timing on the task itself (a few steps of the sequential
  path and of populations of 2, 8 and max_population_chunk members); the cheapest per-candidate
  population size becomes the chunk, smaller groups than the break-even size are trained
  sequentially, and if no size beats the sequential path the evaluator is sequential. Faster
  where the rule guesses wrong, but the plan (and so, at float tolerance, the search's path)
  can change with the machine's load.
* "sequential" - `SequentialEvaluator`, one candidate after another.
* "batched" - `BatchedEvaluator` with chunks of `evaluation.max_population_chunk` candidates.

Chunks are consecutive runs of the generation's pending candidates in population order, so
their composition depends on the plan alone. The rejection screen of a chunk always runs batched
(it only optimizes logits). Local search uses the same population sizes, capped by a memory
estimate against a fixed per-device budget (`population.local_search.meta_chunk`). A stop
request is noticed between chunks and, through `interrupt.check`, every few steps inside a
chunk's training or local search, so a large chunk does not delay a stop.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from search_engine import catalog
from search_engine.config import ExperimentConfig
from search_engine.expr.losses import make_loss
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, Node
from search_engine.population.networks import chain_obstacle, is_chain, population_model
from search_engine.population.training import (
    population_loss,
    train_population,
)
from search_engine.scoring.batched import BatchedEvaluator, Plan
from search_engine.scoring.sequential import SequentialEvaluator
from search_engine.tasks.task import Task
from search_engine.tasks.training import train

_MEASURE_STEPS = 3


def make_evaluator(task: Task, config: ExperimentConfig, saved_plan: dict | None = None):
    """The evaluator `config.evaluation.strategy` asks for (see the module doc).

    With strategy "auto" or "measure" and `saved_plan` (the `plan_record` of an earlier run of
    this search on the same kind of device, kept in its checkpoint), that plan is reused, so a
    resumed search keeps the evaluation path it started with.
    """
    ev = config.evaluation
    same_device = saved_plan is not None and saved_plan.get("device") == task.device.type
    rate = saved_plan.get("search_rate") if same_device else None  # the tuned protocol's rate, chosen once
    if ev.strategy == "sequential":
        return SequentialEvaluator(task, config, rate)
    if ev.strategy == "batched":
        return BatchedEvaluator(task, config, Plan(ev.max_population_chunk, 2, "configured: batched"), rate)
    if same_device:
        if saved_plan.get("strategy") == "sequential":
            why = saved_plan.get("reason")
            return SequentialEvaluator(task, config, rate, why and f"reused from the checkpoint ({why})")
        if saved_plan.get("strategy") == "batched":
            return BatchedEvaluator(task, config, Plan(int(saved_plan["chunk"]), int(saved_plan["min_batch"]),
                                                       f"reused from the checkpoint ({saved_plan.get('reason', '')})"),
                                    rate)
    plan, why = (measure_plan(task, config), None) if ev.strategy == "measure" else rule_plan(task, config)
    return SequentialEvaluator(task, config, reason=why) if plan is None else BatchedEvaluator(task, config, plan)


def default_plan(task: Task, config: ExperimentConfig) -> Plan | None:
    """The "auto" rule (module doc): a function of the model family, the device kind and the
    configured chunk only. None means sequential."""
    return rule_plan(task, config)[0]


def rule_plan(task: Task, config: ExperimentConfig) -> tuple[Plan | None, str | None]:
    """`default_plan`'s choice, and for a sequential one the reason in words (else None)."""
    max_chunk = config.evaluation.max_population_chunk
    if max_chunk < 2:
        return None, f"rule: evaluation.max_population_chunk is {max_chunk}"
    template = task.new_model(config.seed)
    obstacle, device = chain_obstacle(template), task.device.type
    plugin = catalog.plugin_model(task.model_name) is not None
    what = f"{'plugin ' if plugin else ''}model {task.model_name}"
    if device == "cpu" and obstacle:
        return None, (f"rule: {what} is not a layer chain ({obstacle} is not a kind the batched trainer "
                      "runs as one), and vmapped models train faster one at a time on the cpu")
    if obstacle and plugin:
        problem = _vmap_problem(task, config, template)
        if problem:
            return None, f"rule: {what} is not a layer chain ({obstacle}) and cannot run vmapped: {problem}"
    family = "vmapped model" if obstacle else "chain model"
    return Plan(chunk=max_chunk, min_batch=2, reason=f"rule: {family} on {device}, chunks of {max_chunk}"), None


def _vmap_problem(task: Task, config: ExperimentConfig, template: torch.nn.Module) -> str | None:
    """Why two members of `template` cannot train vmapped (a forward and backward on two training
    samples), or None: a plugin's model may do what vmap refuses (in-place updates, .item(), ...)."""
    from search_engine.population.training import stacked_copies

    s = task.splits
    params, buffers = stacked_copies(template, 2)
    try:
        outputs = population_model(template)(params, buffers, s.x_train[:2])  # (2, 2, n_out)
        outputs.float().square().sum().backward()
    except Exception as exc:  # whatever vmap or the plugin's forward raises: the model stays sequential
        return f"{type(exc).__name__}: {exc}"
    return None


def plan_record(evaluator, device: torch.device) -> dict:
    """How `evaluator` scores candidates, as JSON for the checkpoint, the result and the event stream."""
    plan, threads = getattr(evaluator, "plan", None), torch.get_num_threads()  # load_task set them
    rate = getattr(evaluator, "rate_record", None)
    extra = {"search_rate": rate} if rate and rate.get("protocol") == "tuned" else {}
    if isinstance(plan, Plan):
        return {"strategy": "batched", "chunk": plan.chunk, "min_batch": plan.min_batch, "reason": plan.reason,
                "device": device.type, "threads": threads, **extra}
    if type(evaluator) is SequentialEvaluator:
        why = {"reason": evaluator.plan_reason} if evaluator.plan_reason else {}
        return {"strategy": "sequential", **why, "device": device.type, "threads": threads, **extra}
    return {"strategy": type(evaluator).__name__, "device": device.type, "threads": threads, **extra}  # custom


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
    from search_engine.population.training import stacked_copies

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
        return None  # as in the rule: vmapped (BatchNorm) networks are slower batched on the CPU
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
