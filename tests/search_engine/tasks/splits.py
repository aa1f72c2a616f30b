"""Helpers shared by the dataset tests: load a named dataset, undo its feature scaling."""

from __future__ import annotations

import torch

from search_engine.tasks.datasets import DatasetSpec, load_dataset


def load(name: str, seed: int = 0, **kw):
    return load_dataset(DatasetSpec(name, **kw), seed=seed)


def recover(splits, part: str) -> torch.Tensor:
    """Undo the feature standardization of one split."""
    return getattr(splits, f"x_{part}") * splits.x_std + splits.x_mean
