"""The rejection protocol: cheap screens a candidate must pass before any model is trained.

1. A loss whose canonical form does not depend on the prediction f(x) cannot train anything.
2. Optimize a fixed subset's outputs (logits, or predictions for regression) directly under the
   candidate loss with Adam; the task metric must strictly improve, or the loss is rejected.
"""

from __future__ import annotations

import torch
from torch import Tensor

from search_engine import catalog
from search_engine.expr.losses import make_loss
from search_engine.expr.symbolic import depends_on_prediction
from search_engine.expr.tree import Node
from search_engine.tasks.training import metric_from_outputs

NO_PREDICTION = "does not depend on f(x)"
NON_FINITE = "non-finite loss while screening"
NO_IMPROVEMENT = "optimizing outputs directly did not improve the {metric} ({before:.4g} -> {after:.4g})"


def fixed_subset(x_len: int, samples: int, seed: int) -> Tensor:
    """The same `samples` training indices for every candidate of a search."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(x_len, generator=gen)[: min(samples, x_len)]


def initial_outputs(n: int, n_outputs: int, seed: int, device, dtype=torch.float32) -> Tensor:
    """Seeded random starting logits / predictions, shared by all candidates.  # (n, n_outputs)"""
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.randn(n, n_outputs, generator=gen, dtype=dtype).to(device)


def screen(
    tree: Node, kind: str, targets: Tensor, start: Tensor, *, steps: int, lr: float
) -> str | None:
    """Return None if the candidate passes, else the reason it is rejected.

    `targets` are the subset's targets and `start` the shared initial outputs for them.
    """
    if not depends_on_prediction(tree):
        return NO_PREDICTION
    loss_fn = make_loss(tree, kind)
    outputs = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([outputs], lr=lr)
    before = metric_from_outputs(start, targets, kind)
    bad = torch.zeros((), dtype=torch.bool, device=start.device)
    for _ in range(steps):
        loss = loss_fn(outputs, targets)
        bad |= ~torch.isfinite(loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if bool(bad) or not bool(torch.isfinite(outputs).all()):
        return NON_FINITE
    after = metric_from_outputs(outputs.detach(), targets, kind)
    if not after < before:
        return NO_IMPROVEMENT.format(metric=catalog.metric_name(kind), before=before, after=after)
    return None
