"""tasks.training.train: the step schedule of the learning rate."""

from __future__ import annotations

import torch
from torch import nn

from search_engine.config import TrainingConfig
from search_engine.tasks.training import train


def _fit(steps: int, **schedule) -> torch.Tensor:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    cfg = TrainingConfig(steps=steps, batch_size=8, lr=0.5)
    assert train(model, nn.functional.cross_entropy, x, y, cfg, data_seed=1, **schedule)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_a_milestone_multiplies_the_learning_rate_from_that_step_on():
    two_steps = _fit(2)
    frozen_after_one = _fit(2, lr_milestones=(1,), lr_gamma=1e-12)  # step 2 at lr ~ 0
    one_step = _fit(1)
    assert torch.allclose(frozen_after_one, one_step, atol=1e-9)
    assert not torch.allclose(two_steps, one_step, atol=1e-4)
    assert torch.equal(_fit(2, lr_milestones=(5,), lr_gamma=1e-12), two_steps)  # not reached: no change
