"""Scoring a population of candidate losses at once: batched training, fitness and rejection screen.

P copies of the task model (same seed, so the same initial weights as the sequential path) are
trained as one program: parameters are stacked (P, ...), the forward pass is a
`population.networks.population_model`, each member's own loss is computed on its slice of the
outputs, the P losses are summed and differentiated once. SGD (momentum, Nesterov, weight
decay) is elementwise, so one update of the stacked tensors is P independent `torch.optim.SGD`
steps. Every member sees the same mini-batch indices as the sequential `tasks.training.train`.

Members never interact: no op mixes slices of different members, so a member whose loss
turns non-finite cannot change the others' numbers. It is still masked (its gradients are
zeroed from the first non-finite step on, so it stops moving except by weight decay and
momentum) and reported as diverged, as the sequential path reports it.

Numerics: the population's matrix products and convolutions are blocked differently from a
single model's, so parameters agree with the sequential path to float rounding (~1e-7
relative after a step), not bit for bit. Fitness (an error rate or MSE) then agrees to float
tolerance, with two documented exceptions where rounding is amplified: a loss so steep that
training is chaotic (e.g. (4f)^8 at a learning rate where it does not quite diverge), and a
validation sample whose two largest logits tie to within rounding, whose argmax, and so the
error rate by one sample, may differ. Rejection decisions compare metrics with a strict `<`;
a candidate whose outputs do not move at all (zero gradient) gives `after == before` exactly
in both paths, so the decisions agree except for an improvement within rounding of zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from search_engine import catalog
from search_engine.config import TrainingConfig
from search_engine.expr.compile import compile_tree
from search_engine.expr.losses import tree_inputs
from search_engine.expr.program import TreeProgram, population_values
from search_engine.expr.symbolic import depends_on_prediction
from search_engine.expr.tree import Node
from search_engine.expr.weighted import compile_weighted
from search_engine.population.networks import Params, PopulationModel, population_model
from search_engine.runtime import interrupt
from search_engine.scoring.rejection import NO_IMPROVEMENT, NO_PREDICTION, NON_FINITE
from search_engine.tasks.training import batch_indices, metric_from_outputs

#: (outputs (P, B, C), targets (B, ...)) -> the P members' mean losses (P,).
PopulationLoss = Callable[[Tensor, Tensor], Tensor]


# ------------------------------------------------------------------ losses


def population_inputs(outputs: Tensor, targets: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """(y, f) as the trees see them, for all members at once: each (P, B, C) (see `expr.losses.tree_inputs`)."""
    p, b = outputs.shape[:2]
    flat = outputs.reshape(p * b, *outputs.shape[2:])  # (P*B, C)
    repeated = targets.repeat(p, *([1] * (targets.dim() - 1)))  # (P*B, ...)
    y, f = tree_inputs(flat, repeated, kind)  # softmax and one-hot row by row, as for one member
    return y.view(p, b, -1), f.view(p, b, -1)


def _elementwise(tree: Node, weights: Tensor | None) -> Callable[[Tensor, Tensor], Tensor]:
    """(y (B, C), f (B, C)) -> one member's elementwise loss values (B, C), symbolic or with fixed edge weights."""
    if weights is None:
        return compile_tree(tree)
    weighted = compile_weighted(tree)
    return lambda y, f: weighted(weights, y, f)


def population_loss(
    trees: Sequence[Node], kind: str, weights: Sequence[Tensor | None] | None = None
) -> PopulationLoss:
    """Member p's loss is `trees[p]` (with edge weights `weights[p]` when given) on outputs[p].

    Equals `[make_loss(t, kind)(out[p], targets) ...]` (or the weighted loss of `loss_for`).
    The softmax / one-hot inputs are computed once for all members (ordinary autograd). The
    trees then run as one `expr.program.TreeProgram`: values and d(loss)/d(f) in one sweep
    without autograd, the backward one multiplication; the values are those of the autograd
    path bit for bit, the gradients equal to float rounding. That is a first-order program: a
    double backward (create_graph=True) recomputes the derivative with autograd recording it.
    Where the program would give a wrong gradient, each tree runs as ordinary autograd ops
    instead: edge weights that require grad, or targets that do. (Merging the P trees into one
    program of stacked same-op groups was measured: it only pays when members share whole
    trees, which a search's population, deduplicated by canonical form, never does.)
    """
    ws = list(weights) if weights is not None else [None] * len(trees)
    members = [_elementwise(t, w) for t, w in zip(trees, ws, strict=True)]
    differentiable_weights = any(w is not None and w.requires_grad for w in ws)
    program = None if differentiable_weights else TreeProgram(trees, ws)

    def loss(outputs: Tensor, targets: Tensor) -> Tensor:
        y, f = population_inputs(outputs, targets, kind)  # (P, B, C) each
        y0 = y[0]  # the one-hot / target inputs are the same for every member
        if program is not None and not y0.requires_grad:
            return population_values(program, y0, f)  # (P,)
        values = torch.stack([m(y0, fp) for m, fp in zip(members, f.unbind(0), strict=True)])  # (P, B, C)
        return values.sum(dim=-1).mean(dim=-1)  # (P,)

    return loss


# ------------------------------------------------------------------ training


def _alive_view(alive: Tensor, like: Tensor) -> Tensor:
    """(P,) mask shaped to broadcast against a stacked (P, ...) tensor."""
    return alive.view(-1, *([1] * (like.dim() - 1)))


@torch.no_grad()
def sgd_step_(
    params: list[Tensor], grads: Sequence[Tensor], momenta: list[Tensor] | None, alive: Tensor, cfg: TrainingConfig
) -> list[Tensor] | None:
    """One in-place `torch.optim.SGD` step on stacked parameters; dead members' gradients count as 0.

    Returns the momentum buffers (None without momentum), created on the first step.
    """
    new_momenta: list[Tensor] = []
    # Masking changes nothing while every member lives; on the CPU asking costs no device sync.
    mask = alive.device.type != "cpu" or not bool(alive.all())
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        d = torch.where(_alive_view(alive, g), g, 0.0) if mask else g
        if cfg.weight_decay:
            d = d.add(p, alpha=cfg.weight_decay)
        if cfg.momentum:
            buf = d.clone() if momenta is None else momenta[i].mul_(cfg.momentum).add_(d)
            new_momenta.append(buf)
            d = d.add(buf, alpha=cfg.momentum) if cfg.nesterov else buf
        p.add_(d, alpha=-cfg.lr)
    return new_momenta if cfg.momentum else None


def population_grads(values: Tensor, tensors: list[Tensor], create_graph: bool = False) -> list[Tensor]:
    """d sum(values) / d tensors; zeros where nothing depends on them (or no member's loss has a graph)."""
    if not values.requires_grad:
        return [torch.zeros_like(t) for t in tensors]
    return list(torch.autograd.grad(
        values.sum(), tensors, create_graph=create_graph, allow_unused=True, materialize_grads=True))


def members_finite(tensors: Sequence[Tensor]) -> Tensor:
    """(P,) True where every floating tensor's member slice is finite."""
    ok = None
    for t in tensors:
        if t.is_floating_point():
            fin = torch.isfinite(t.reshape(len(t), -1)).all(dim=1)
            ok = fin if ok is None else ok & fin
    return ok


def train_population(
    model: PopulationModel, params: Params, buffers: Params, loss: PopulationLoss, x: Tensor, y: Tensor,
    cfg: TrainingConfig, *, data_seed: int = 0, check_every: int = 50,
) -> Tensor:
    """Train the stacked population in place, as `tasks.training.train` trains each member; returns alive (P,).

    A member is dead once its loss was non-finite at any step or its parameters/buffers end
    non-finite. Training stops early only when every member is dead (checked every `check_every`).
    """
    order = batch_indices(len(x), cfg.batch_size, cfg.steps, torch.Generator().manual_seed(data_seed), x.device)
    tensors = list(params.values())
    alive = torch.ones(len(tensors[0]), dtype=torch.bool, device=x.device)
    momenta = None
    for step in range(cfg.steps):
        interrupt.check(step)
        idx = order[step]
        values = loss(model(params, buffers, x[idx]), y[idx])  # (P,)
        alive &= torch.isfinite(values)
        grads = population_grads(values, tensors)
        momenta = sgd_step_(tensors, grads, momenta, alive, cfg)
        if (step + 1) % check_every == 0 and not bool(alive.any()):
            break
    return alive & members_finite(tensors + list(buffers.values()))


# ------------------------------------------------------------------ metric


@torch.no_grad()
def predict_population(model: PopulationModel, params: Params, buffers: Params, x: Tensor, batch_size: int = 1024) -> Tensor:
    """Outputs of every member for all of x (the template model must be in eval mode).  # (P, N, C)"""
    return torch.cat([model(params, buffers, x[i : i + batch_size]) for i in range(0, len(x), batch_size)], dim=1)


def population_metrics(outputs: Tensor, y: Tensor, kind: str, alive: Tensor) -> list[float | None]:
    """The task metric of each member (None for dead or non-finite ones)."""
    flags = alive.tolist()
    values = [metric_from_outputs(out, y, kind) if ok else float("nan") for out, ok in zip(outputs, flags)]
    return [v if math.isfinite(v) else None for v in values]


def stacked_copies(model: nn.Module, p: int) -> tuple[Params, Params]:
    """P identical copies of `model`'s parameters (leaves requiring grad) and buffers, stacked.  # (P, ...)"""
    params = {n: t.detach().unsqueeze(0).repeat(p, *([1] * t.dim())).requires_grad_(True)
              for n, t in model.named_parameters()}
    buffers = {n: t.detach().unsqueeze(0).repeat(p, *([1] * t.dim())) for n, t in model.named_buffers()}
    return params, buffers


def fitness_population(
    template: nn.Module, loss: PopulationLoss, p: int, splits, kind: str, cfg: TrainingConfig, seed: int
) -> list[float | None]:
    """Validation metric after training P copies of `template` (each with its own loss); None = diverged."""
    return [metric for metric, _ in score_population(template, loss, p, splits, kind, cfg, seed)]


def score_population(
    template: nn.Module, loss: PopulationLoss, p: int, splits, kind: str, cfg: TrainingConfig, seed: int
) -> list[tuple[float | None, float | None]]:
    """(validation metric, tie-breaker) of each member after training, as `scoring.sequential`'s
    fitness gives them: the tie-breaker is the validation cross-entropy (classification only)."""
    from search_engine.scoring.sequential import tiebreak

    model = population_model(template)
    params, buffers = stacked_copies(template, p)
    template.train()
    alive = train_population(model, params, buffers, loss, splits.x_train, splits.y_train, cfg, data_seed=seed)
    template.eval()
    try:
        outputs = predict_population(model, params, buffers, splits.x_val)
    finally:
        template.train()
    metrics = population_metrics(outputs, splits.y_val, kind, alive)
    return [(m, None if m is None else tiebreak(out, splits.y_val, kind)) for m, out in zip(metrics, outputs)]


# ------------------------------------------------------------------ rejection


def screen_population(
    trees: Sequence[Node], kind: str, targets: Tensor, start: Tensor, *, steps: int, lr: float
) -> list[str | None]:
    """`scoring.rejection.screen` for many candidates: all their outputs are optimized as one (P, n, C) tensor.

    Adam is elementwise, so one Adam on the stacked outputs is P independent Adams. A member
    whose loss turns non-finite has its gradient zeroed from then on and is rejected as NON_FINITE.
    """
    reasons: list[str | None] = [None if depends_on_prediction(t) else NO_PREDICTION for t in trees]
    live = [i for i, r in enumerate(reasons) if r is None]
    if not live:
        return reasons
    loss = population_loss([trees[i] for i in live], kind)
    outputs = start.unsqueeze(0).repeat(len(live), 1, 1).requires_grad_(True)  # (P, n, C)
    opt = torch.optim.Adam([outputs], lr=lr)
    bad = torch.zeros(len(live), dtype=torch.bool, device=start.device)
    for _ in range(steps):
        values = loss(outputs, targets)  # (P,)
        bad |= ~torch.isfinite(values)
        (grad,) = population_grads(values, [outputs])
        outputs.grad = torch.where(_alive_view(~bad, grad), grad, 0.0)
        opt.step()
    final = (~bad & members_finite([outputs.detach()])).tolist()
    before = metric_from_outputs(start, targets, kind)
    for i, ok, out in zip(live, final, outputs.detach()):
        reasons[i] = _screen_verdict(ok, before, out, targets, kind)
    return reasons


def _screen_verdict(ok: bool, before: float, outputs: Tensor, targets: Tensor, kind: str) -> str | None:
    """The rejection reason of one screened member, exactly as `scoring.rejection.screen` words it."""
    if not ok:
        return NON_FINITE
    after = metric_from_outputs(outputs, targets, kind)
    if not after < before:
        return NO_IMPROVEMENT.format(metric=catalog.metric_name(kind), before=before, after=after)
    return None
