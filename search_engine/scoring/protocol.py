"""The fitness protocol: what a candidate loss is compared at, so that a learning rate cannot win.

Scaling a loss by c scales every SGD step by c: with plain SGD, training with c * L at rate lr
is training with L at rate c * lr. So under one fixed rate, a search rewards losses that rescale
the baseline towards a better rate for it, and local search learns that scale. The "tuned"
protocol (`training.lr_protocol`, the default) removes both ways to win by a rate:

* **The baseline's own best rate.** Before the search, the baseline loss is trained at a grid of
  half-decade rates around `training.lr` (`tuned_lr.choose_rate`, scored exactly as a candidate's
  fitness is: the search's seed and steps, the validation split), and the best becomes the rate
  every candidate trains at. The baseline then enters the search at its best.
* **One gradient scale.** Every candidate loss L is multiplied by
  ``s(L) = |d baseline / d z| / |d L / d z|``, the ratio of gradient norms with respect to the
  model's outputs z on a fixed probe (the search's initial model on the screen's fixed training
  subset). ``s(c * L) * c * L = s(L) * L``: a rescaled loss is the same loss. In local search the
  scale is a differentiable function of the edge weights, so the meta-gradient has no component
  along the overall scale: local search can change only the loss's shape.

"fixed" is the paper's protocol: every loss as it is, at `training.lr`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from search_engine.config import ExperimentConfig
from search_engine.expr.losses import BASELINE_TREES, make_loss
from search_engine.scoring.rejection import fixed_subset
from search_engine.scoring.tuned_lr import at_rate, choose_rate
from search_engine.tasks.task import Task
from search_engine.tasks.training import LossFn, evaluate_metric, train

#: Scales beyond these bounds are clamped: a loss flat at the probe (gradient ~0) is not blown up
#: to an astronomically steep one, nor a cliff-steep loss shrunk to nothing.
SCALE_RANGE = (1e-4, 1e4)


def is_tuned(config: ExperimentConfig) -> bool:
    """True when the configuration uses the tuned protocol."""
    return config.training.lr_protocol == "tuned"


@dataclass(frozen=True)
class GradientProbe:
    """The fixed outputs a loss's gradient size is measured at, and the baseline's size there."""

    outputs: Tensor  # (n, C) the search's initial model on the probe inputs, detached
    targets: Tensor  # (n,) or (n, K)
    reference: float  # |d baseline / d outputs|

    @classmethod
    def for_task(cls, task: Task, config: ExperimentConfig) -> GradientProbe:
        """The probe of a search: its initial model (`config.seed`) on the screen's fixed training subset."""
        s = task.splits
        idx = fixed_subset(len(s.x_train), config.rejection.samples, config.seed).to(task.device)
        model = task.new_model(config.seed)
        model.eval()
        with torch.no_grad():
            outputs = model(s.x_train[idx]).detach()
        model.train()
        targets = s.y_train[idx]
        reference = float(gradient_norm(baseline_tree_loss(task.kind), outputs, targets))
        return cls(outputs=outputs, targets=targets, reference=reference)

    def scale(self, loss_fn: LossFn) -> float:
        """s(L) for a loss with fixed parameters; 1.0 where L's gradient is zero or not finite."""
        norm = float(gradient_norm(loss_fn, self.outputs, self.targets))
        if not (math.isfinite(norm) and norm > 0 and math.isfinite(self.reference) and self.reference > 0):
            return 1.0
        return min(max(self.reference / norm, SCALE_RANGE[0]), SCALE_RANGE[1])

    def differentiable_scale(self, loss_fn: LossFn) -> Tensor:
        """s(L) as a tensor that carries the gradient with respect to whatever `loss_fn` depends on."""
        return self.population_scales(lambda z, t: loss_fn(z[0], t).unsqueeze(0), 1)[0]

    def population_scales(self, values_fn: Callable[[Tensor, Tensor], Tensor], members: int) -> Tensor:
        """`differentiable_scale` of P losses at once: values_fn(outputs (P, n, C), targets) -> (P,).  # (P,)"""
        z = self.outputs.unsqueeze(0).repeat(members, *([1] * self.outputs.dim())).requires_grad_(True)
        with torch.enable_grad():
            values = values_fn(z, self.targets)  # (P,)
            if not values.requires_grad:
                return torch.ones(members, dtype=z.dtype, device=z.device)
            (grad,) = torch.autograd.grad(values.sum(), [z], create_graph=True, allow_unused=True,
                                          materialize_grads=True)
        norms = grad.reshape(members, -1).norm(dim=1)  # (P,)
        ok = torch.isfinite(norms) & (norms > 0)
        if not self.reference > 0:
            ok = torch.zeros_like(ok)
        ratio = self.reference / torch.where(ok, norms, torch.ones_like(norms))
        return torch.where(ok, ratio.clamp(*SCALE_RANGE), torch.ones_like(norms))


def gradient_norm(loss_fn: LossFn, outputs: Tensor, targets: Tensor, *, create_graph: bool = False) -> Tensor:
    """|d loss_fn(outputs, targets) / d outputs| (L2 over the whole probe), a 0-d tensor."""
    z = outputs.detach().requires_grad_(True)
    with torch.enable_grad():
        value = loss_fn(z, targets)
        if not value.requires_grad:
            return torch.zeros((), dtype=z.dtype, device=z.device)
        (grad,) = torch.autograd.grad(value, [z], create_graph=create_graph, allow_unused=True,
                                      materialize_grads=True)
    return grad.norm()


def scaled(loss_fn: LossFn, scale: float | None) -> LossFn:
    """`loss_fn` multiplied by `scale` (unchanged for None)."""
    if scale is None:
        return loss_fn
    return lambda outputs, targets: loss_fn(outputs, targets) * scale


def baseline_tree_loss(kind: str) -> LossFn:
    """The baseline as the search trains it (its expression tree, as every candidate is compiled), so
    its scale is exactly 1 and its fitness at the chosen rate exactly the rate's score."""
    return make_loss(BASELINE_TREES[kind], kind)


def baseline_validation(task: Task, config: ExperimentConfig, lr: float) -> float | None:
    """The baseline's fitness at rate `lr`: trained from the search's seed, validation metric; None if it diverged."""
    s = task.splits
    model = task.new_model(config.seed)
    if not train(model, baseline_tree_loss(task.kind), s.x_train, s.y_train, at_rate(config, lr).training,
                 data_seed=config.seed):
        return None
    value = evaluate_metric(model, s.x_val, s.y_val, task.kind)
    return value if math.isfinite(value) else None


def search_rate(task: Task, config: ExperimentConfig,
                score: Callable[[float], float | None] | None = None) -> tuple[float, dict]:
    """The rate a search trains every candidate at, and the record of how it was chosen.

    "fixed": `training.lr`. "tuned": the baseline's best of `training.lr` and its half-decade
    neighbours (extended past an edge that wins, `tuned_lr.choose_rate`), scored as the
    baseline's fitness. A baseline that diverges at every rate keeps `training.lr`.
    """
    lr = config.training.lr
    if not is_tuned(config):
        return lr, {"protocol": "fixed", "lr": lr}
    measure = score or (lambda r: baseline_validation(task, config, r))
    # Half-decade multiples of the configured rate, so the configured rate itself is one of them.
    best, tried = choose_rate(lambda factor: measure(lr * factor), range(-1, 2))
    chosen = lr if best is None else lr * best
    return chosen, {"protocol": "tuned", "lr": chosen, "configured_lr": lr,
                    "tried": [[lr * factor, v] for factor, v in tried.items()]}


def same_rate_choice(record: dict | None, config: ExperimentConfig) -> bool:
    """True when `record` (a `search_rate` record kept with a search) was chosen for `config`'s protocol and rate."""
    if not isinstance(record, dict) or not isinstance(record.get("lr"), (int, float)):
        return False
    if record.get("protocol") != config.training.lr_protocol:
        return False
    return record.get("configured_lr", record["lr"]) == config.training.lr


def search_rate_of(plan: dict | None) -> float | None:
    """The rate a search trained its candidates at, as its plan recorded it (`search_rate`, the
    tuned protocol); None for a plan without one (the fixed protocol, or a plan stored before)."""
    rate = ((plan or {}).get("search_rate") or {}).get("lr")
    return float(rate) if isinstance(rate, (int, float)) and not isinstance(rate, bool) else None


def tuned_config(config: ExperimentConfig, lr: float) -> ExperimentConfig:
    """`config` training at `lr` (a no-op for the fixed protocol's own rate)."""
    if lr == config.training.lr:
        return config
    return dataclasses.replace(config, training=dataclasses.replace(config.training, lr=lr))
