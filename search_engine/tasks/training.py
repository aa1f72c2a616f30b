"""Training a task's model with a given loss, and measuring the task metric.

Data lives on the device as tensors; batches are drawn by index from a seeded generator, so a
training run is a deterministic function of (model seed, data seed, loss) on a given device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from search_engine.config import TrainingConfig
from search_engine.runtime import interrupt

LossFn = Callable[[Tensor, Tensor], Tensor]


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` means CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(params, cfg: TrainingConfig) -> torch.optim.SGD:
    """SGD with the configured momentum, Nesterov flag and weight decay."""
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
    )


def batch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator, device) -> Tensor:
    """Indices for `steps` mini-batches: epochs of random permutations, concatenated.  # (steps, B)

    A batch larger than the data set is clamped to the data set size.
    """
    b = min(batch_size, n)
    needed = steps * b
    epochs = -(-needed // n)
    perms = [torch.randperm(n, generator=generator) for _ in range(epochs)]
    return torch.cat(perms)[:needed].view(steps, b).to(device)


def params_finite(model: nn.Module) -> bool:
    """True if every parameter and buffer is finite."""
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def train(
    model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, cfg: TrainingConfig, *,
    steps: int | None = None, data_seed: int = 0, check_every: int = 50,
    lr_milestones: tuple[int, ...] = (), lr_gamma: float = 0.1,
) -> bool:
    """Train `model` in place with SGD for `steps` (default cfg.steps) mini-batches of (x, y).

    The learning rate is multiplied by `lr_gamma` after each step number in `lr_milestones`
    (a step schedule, as the meta-test of long runs uses).

    Returns False as soon as the loss or a parameter becomes non-finite (the caller treats that
    as the worst fitness), True otherwise. Finiteness is checked every `check_every` steps to
    avoid a device sync per step, and once more at the end.
    """
    steps = cfg.steps if steps is None else steps
    gen = torch.Generator().manual_seed(data_seed)
    order = batch_indices(len(x), cfg.batch_size, steps, gen, x.device)
    opt = make_optimizer(model.parameters(), cfg)
    model.train()
    bad = torch.zeros((), dtype=torch.bool, device=x.device)
    milestones = set(lr_milestones)
    for step in range(steps):
        interrupt.check(step)
        if step in milestones:
            for group in opt.param_groups:
                group["lr"] *= lr_gamma
        idx = order[step]
        loss = loss_fn(model(x[idx]), y[idx])
        bad |= ~torch.isfinite(loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % check_every == 0 and (bool(bad) or not params_finite(model)):
            return False
    return not bool(bad) and params_finite(model)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    """Model outputs for all of x, in evaluation mode."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def metric_from_outputs(outputs: Tensor, y: Tensor, kind: str) -> float:
    """Error rate (classification) or mean squared error (regression); NaN if outputs are not finite."""
    if not bool(torch.isfinite(outputs).all()):
        return float("nan")
    if kind == "classification":
        return (outputs.argmax(dim=-1) != y).float().mean().item()
    return ((outputs.reshape(y.shape) - y) ** 2).mean().item()


def evaluate_metric(model: nn.Module, x: Tensor, y: Tensor, kind: str) -> float:
    """The task metric of a trained model on (x, y); lower is better."""
    return metric_from_outputs(predict(model, x), y, kind)
