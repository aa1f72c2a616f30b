"""Local search for several candidates in one program: the meta-gradient, batched.

`scoring.local_search.local_search` refines one tree's edge weights. Every candidate of a search uses the same
meta-step seeds, so at meta step t all candidates start from the same model and see the same
training and validation batches; only their losses differ. Each candidate keeps its own Adam
state; a candidate whose meta-loss or meta-gradient is not finite skips the update, exactly as
in `scoring.local_search.local_search`. Two formulations of one meta step, both exact:

* One inner step (EvoMAL's setting) and a layer-chain model (logistic, mlp, lenet5, allcnnc):
  `first_step_objective`. Because every candidate starts from the same parameters on the same
  batch, the network's derivatives at that shared point are computed once
  (`linearize.Linearization`), and the meta-gradient needs one batched VJP, one population
  forward/backward at the updated parameters and one batched JVP - no graph through the
  network and no second-order backward through convolutions (only the small loss trees are
  differentiated twice).
* Otherwise (several inner steps, BatchNorm networks): the unrolled program
  (`_population_objective`). The P inner models are stacked (P, ...) and run with
  `population.networks.population_model`: one inner SGD step per batch for all of them (gradients
  with `create_graph`, summed over the members, so each member's gradient is its own), one
  validation forward, and one backward of the summed meta-losses.

Meta-gradients agree with `scoring.local_search.local_search` (the plain unrolled reference) to float rounding.
One amplification: an edge whose meta-gradient is zero in exact arithmetic (e.g. the weight on f
inside cross-entropy's log, since log(w f) = log w + log f) gets a rounding-sized gradient
(~1e-8) that differs between the paths, and Adam's normalization turns it into a step of up to
meta_lr; such weights may differ by about meta_lr per meta step (to first order they do not
move the meta-objective).

Memory grows with P (and, unrolled, with inner_steps: the graph is kept for the
meta-gradient), so `meta_chunk` bounds how many candidates go into one program; CUDA
out-of-memory errors halve the chunk and retry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from search_engine.config import LocalSearchConfig, TrainingConfig
from search_engine.expr.losses import baseline_loss, reduce_batch
from search_engine.expr.tree import Node
from search_engine.expr.weighted import compile_weighted, init_weights
from search_engine.population.linearize import Linearization
from search_engine.population.networks import is_chain, population_model
from search_engine.population.training import population_grads, population_inputs, stacked_copies
from search_engine.runtime import interrupt
from search_engine.scoring.local_search import (
    _DROPOUT_STREAM,
    _MODEL_STREAM,
    _TRAIN_STREAM,
    _VAL_STREAM,
    LocalSearchResult,
    _as_floats,
    _batch,
    _seeded_rng,
    sgd_update,
    step_seed,
)

if TYPE_CHECKING:
    from search_engine.scoring.protocol import GradientProbe

# On the CPU, larger local-search programs were slower per candidate (LeNet-5, 2 cores: ~6-8
# members per program beat 25; the unrolled graph no longer fits the caches and allocator).
_CPU_PROGRAM_BYTES = 512 * 1024**2

# Bytes of unrolled graph per member, per forward pass, relative to that pass's activations:
# forward activations, their gradients and the double-backward intermediates.
_GRAPH_FACTOR = 4


def _weighted_population_loss(trees: Sequence[Node], kind: str, probe: GradientProbe | None = None):
    """(weights list, outputs (P, B, C), targets) -> (P,) weighted losses, member p with weights[p].

    With `probe` (the tuned protocol) member p's loss is multiplied by its differentiable gradient
    scale, as `scoring.local_search.normalized` does for one candidate (all members' scales in one
    batched double backward).
    """
    members = [compile_weighted(t) for t in trees]

    def raw(weights: Sequence[Tensor], outputs: Tensor, targets: Tensor) -> Tensor:
        y, f = population_inputs(outputs, targets, kind)  # (P, B, C) each
        parts = zip(members, weights, y.unbind(0), f.unbind(0), strict=True)
        return torch.stack([reduce_batch(m(w, yp, fp).sum(dim=-1), "mean") for m, w, yp, fp in parts])  # (P,)

    if probe is None:
        return raw

    def loss(weights: Sequence[Tensor], outputs: Tensor, targets: Tensor) -> Tensor:
        scales = probe.population_scales(lambda o, t: raw(weights, o, t), len(weights))  # (P,)
        return raw(weights, outputs, targets) * scales

    return loss


def _population_objective(task, loss, weights: list[Tensor], cfg: LocalSearchConfig, training: TrainingConfig,
                          seed: int, step: int) -> Tensor:
    """`scoring.local_search._objective` for every member at once: the (P,) meta-losses of meta step `step`."""
    s = task.splits
    template = task.new_model(step_seed(seed, step, _MODEL_STREAM))
    dtype = s.x_train.dtype if s.x_train.is_floating_point() else torch.get_default_dtype()
    template.to(dtype=dtype).train()
    model = population_model(template)
    params, buffers = stacked_copies(template, len(weights))
    batches = _batch(s.x_train, s.y_train, cfg.batch_size, cfg.inner_steps, step_seed(seed, step, _TRAIN_STREAM))
    ((x_val, y_val),) = _batch(s.x_val, s.y_val, cfg.batch_size, 1, step_seed(seed, step, _VAL_STREAM))
    momenta = None
    with _seeded_rng(step_seed(seed, step, _DROPOUT_STREAM), s.x_train.device), torch.enable_grad():
        for x, y in batches:
            inner = loss(weights, model(params, _fresh(buffers), x), y)  # (P,)
            grads = population_grads(inner, list(params.values()), create_graph=True)
            params, momenta = sgd_update(params, grads, momenta, training)
        outputs = model(params, _fresh(buffers), x_val)  # (P, B, C)
    base = baseline_loss(task.kind)
    return torch.stack([base(out, y_val) for out in outputs.unbind(0)])


def uses_shared_start(task, cfg: LocalSearchConfig) -> bool:
    """True when `first_step_objective` applies: one inner step, and a model `Linearization` supports."""
    return cfg.inner_steps == 1 and is_chain(task.new_model(0))


def first_step_objective(task, loss, weights: list[Tensor], cfg: LocalSearchConfig, training: TrainingConfig,
                         seed: int, step: int) -> tuple[Tensor, list[Tensor]]:
    """The (P,) meta-losses of meta step `step` with one inner step, and each member's exact meta-gradient.

    All members start from the same theta0 on the same batch; member p's inner step is
    theta1_p = theta0 - a * (g_p + wd * theta0), with g_p = J^T c_p(w_p), c_p the gradient of its
    loss with respect to the shared outputs, and a = lr (times 1 + momentum with Nesterov: the
    first step of `torch.optim.SGD`). With v_p the gradient of its meta-loss at theta1_p, the
    chain rule gives dM_p/dw_p = -a * d/dw_p (c_p(w_p) . J v_p): the network's part is one
    batched VJP and one batched JVP at the shared point (`Linearization`), and only the loss
    trees are differentiated twice. No graph through the network is kept.
    """
    s = task.splits
    template = task.new_model(step_seed(seed, step, _MODEL_STREAM))
    dtype = s.x_train.dtype if s.x_train.is_floating_point() else torch.get_default_dtype()
    template.to(dtype=dtype).train()
    theta0 = {n: t.detach() for n, t in template.named_parameters()}
    ((x, y),) = _batch(s.x_train, s.y_train, cfg.batch_size, 1, step_seed(seed, step, _TRAIN_STREAM))
    ((x_val, y_val),) = _batch(s.x_val, s.y_val, cfg.batch_size, 1, step_seed(seed, step, _VAL_STREAM))
    shared = Linearization.at(template, theta0, x)
    p = len(weights)
    outputs = shared.output.unsqueeze(0).repeat(p, *([1] * shared.output.dim())).requires_grad_(True)  # (P, B, C)
    with torch.enable_grad():
        (cotangents,) = population_grads(loss(weights, outputs, y), [outputs], create_graph=True)  # (P, B, C)
        a = training.lr * (1 + training.momentum if training.momentum and training.nesterov else 1)
        g = shared.vjp(cotangents.detach())
        theta1 = {n: (t - a * (g[n] + training.weight_decay * t)).requires_grad_(True) for n, t in theta0.items()}
        out_val = population_model(template)(theta1, {}, x_val)  # (P, B, C)
        base = baseline_loss(task.kind)
        values = torch.stack([base(out, y_val) for out in out_val.unbind(0)])  # (P,)
        v = dict(zip(theta1, population_grads(values, list(theta1.values()))))
        directions = shared.jvp(v)  # (P, B, C)
        grads = population_grads((cotangents * directions).sum(dim=(1, 2)), weights)
    return values.detach(), [-a * gw for gw in grads]


def _fresh(buffers: dict[str, Tensor]) -> dict[str, Tensor]:
    """Copies of the buffers, so BatchNorm's in-place statistics updates touch no graph input."""
    return {n: b.clone() for n, b in buffers.items()}


def local_search_population(
    task, trees: Sequence[Node], cfg: LocalSearchConfig, training: TrainingConfig, seed: int, *,
    unrolled: bool = False, probe: GradientProbe | None = None,
) -> list[LocalSearchResult]:
    """`scoring.local_search.local_search` for each of `trees`, all in one program; same seeds, same skipping rule.

    `unrolled` forces the unrolled program even where `first_step_objective` applies (for
    benchmarks and tests that compare the two).
    """
    start = time.perf_counter()
    x = task.splits.x_train
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    initial = [init_weights(t, seed).to(device=x.device, dtype=dtype) for t in trees]  # (E_p,) each
    weights = [w.clone().requires_grad_(True) for w in initial]
    optimizer = torch.optim.Adam(weights, lr=cfg.meta_lr)  # per-tensor state: P independent Adams
    loss = _weighted_population_loss(trees, task.kind, probe)
    traces: list[list[float | None]] = [[] for _ in trees]
    skipped = [0] * len(trees)
    shared_start = not unrolled and uses_shared_start(task, cfg)
    for step in range(cfg.meta_steps):
        interrupt.check(step)
        if shared_start:
            values, grads = first_step_objective(task, loss, weights, cfg, training, seed, step)
        else:
            values = _population_objective(task, loss, weights, cfg, training, seed, step)  # (P,)
            grads = population_grads(values, weights)
        finite = torch.isfinite(values) & torch.stack([torch.isfinite(g).all() for g in grads])
        _meta_update(optimizer, weights, grads, finite.tolist(), values.detach().tolist(), traces, skipped)
    seconds = (time.perf_counter() - start) / len(trees)
    return [
        LocalSearchResult(weights=_as_floats(w), initial_weights=_as_floats(w0), meta_losses=tuple(tr),
                          skipped_steps=sk, seconds=seconds)
        for w, w0, tr, sk in zip(weights, initial, traces, skipped)
    ]


def _meta_update(optimizer, weights, grads, finite, values, traces, skipped) -> None:
    """One Adam step for the members with a finite meta-loss and gradient; the others skip it."""
    last = []
    for w, g, ok, v, trace, i in zip(weights, grads, finite, values, traces, range(len(weights))):
        trace.append(v if ok else None)
        skipped[i] += not ok
        w.grad = g if ok else None  # Adam leaves parameters without a gradient untouched
        last.append(w.detach().clone() if ok else None)
    optimizer.step()
    with torch.no_grad():
        for i, (w, before) in enumerate(zip(weights, last)):
            if before is not None and not bool(torch.isfinite(w).all()):  # never keep non-finite weights
                w.copy_(before)
                skipped[i] += 1


# ------------------------------------------------------------------ memory


def activation_bytes(model: nn.Module, x: Tensor) -> int:
    """Bytes of all leaf-module outputs of one forward pass of `model` on `x`."""
    total = 0

    def hook(_module, _inputs, output) -> None:
        nonlocal total
        if isinstance(output, Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def memory_budget(device: torch.device) -> int:
    """Bytes one local-search program may use: half the GPU's memory, `_CPU_PROGRAM_BYTES` on the CPU.

    A property of the kind of device, never of the memory free at the moment: the chunks (and
    so, at float tolerance, the search's path) must not change with what else the machine runs.
    """
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // 2
    return _CPU_PROGRAM_BYTES


def meta_chunk(task, cfg: LocalSearchConfig, max_chunk: int) -> int:
    """How many candidates one batched local-search program may hold, by a memory estimate."""
    s = task.splits
    template = task.new_model(0)
    per_pass = activation_bytes(template, s.x_train[: cfg.batch_size])
    per_member = per_pass * (cfg.inner_steps + 1) * _GRAPH_FACTOR
    return max(1, min(max_chunk, memory_budget(task.device) // max(per_member, 1)))
