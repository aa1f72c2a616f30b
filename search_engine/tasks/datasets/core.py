"""Dataset types and the split/scaling logic shared by every dataset loader.

Loaders (built-in, tabular, torchvision) only produce a `Source`: raw examples with features in
their natural range. `make_splits` turns a `Source` into `Splits` the same way for all of them,
so the split and scaling rules (disjoint, stratified, seeded, training statistics only) live in
one place. The dataset types and the split itself are torch-free (`search_engine.tasks.dataspec`),
so a configuration can be checked without this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from search_engine.catalog import KINDS  # noqa: F401  (tabular imports it from here)
from search_engine.tasks.dataspec import (  # noqa: F401  (torch-free; re-exported for the loaders)
    DataError,
    DatasetInfo,
    DatasetSpec,
    check_fractions,
    split_labels,
)

# Standard deviations below this are treated as "constant": the feature is only centred.
# Dividing by a tiny std would blow unseen (val/test) values up to huge magnitudes.
STD_FLOOR = 1e-6

_DATA_FIELDS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
_STAT_FIELDS = ("x_mean", "x_std", "y_mean", "y_std")


@dataclass(frozen=True)
class Splits:
    """Train/validation/test tensors of one dataset, scaled with training statistics.

    Features are float32 shaped (N, *info.input_shape). Classification targets are int64 (N,);
    regression targets are float32 (N, n_outputs), standardized with `y_mean`/`y_std`.
    `x = (raw_scaled - x_mean) / x_std`, where raw_scaled is [0, 1] for images.

    `idx_*` say where each row came from: positions in the loader's example pool (for
    torchvision sets: train/val index the official training set, test the official test set).
    They are bookkeeping for provenance and tests and stay on the CPU in `to()`.
    """

    info: DatasetInfo
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    idx_train: Tensor | None = None
    idx_val: Tensor | None = None
    idx_test: Tensor | None = None
    x_mean: Tensor | None = None
    x_std: Tensor | None = None
    y_mean: Tensor | None = None
    y_std: Tensor | None = None

    def to(self, device: torch.device | str) -> Splits:
        """A copy with data and scaling statistics on `device` (indices stay on the CPU)."""
        moved = {
            name: getattr(self, name).to(device)
            for name in _DATA_FIELDS + _STAT_FIELDS
            if getattr(self, name) is not None
        }
        return dataclasses.replace(self, **moved)


@dataclass(frozen=True)
class Source:
    """Raw examples from a loader, before splitting and scaling.

    `x` is float32 (N, *input_shape), already in [0, 1] for images. `y` holds int64 class ids
    or float targets (N,) / (N, k). `x_test`/`y_test` are an official test split, if any.
    """

    info: DatasetInfo
    x: Tensor
    y: np.ndarray
    image: bool  # per-channel scaling (images) instead of per-feature (tabular)
    x_test: Tensor | None = None
    y_test: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None  # for error messages only


def split_indices(source: Source, spec: DatasetSpec, seed: int) -> tuple[np.ndarray, ...]:
    """Disjoint (train, val, test) index arrays; test indexes the official test set if present."""
    official = None if source.x_test is None else len(source.y_test)
    return split_labels(source.y, source.info.kind == "classification", official, spec, seed, source.class_names)


def _feature_stats(x_train: Tensor, image: bool) -> tuple[Tensor, Tensor]:
    """Mean/std of the training features: per channel for images, per feature otherwise."""
    dims = (0, *range(2, x_train.dim())) if image else (0,)
    mean = x_train.mean(dim=dims, keepdim=True)[0]
    std = x_train.std(dim=dims, correction=0, keepdim=True)[0]
    return mean, torch.where(std < STD_FLOOR, torch.ones_like(std), std)


def _targets(y: np.ndarray, classify: bool) -> Tensor:
    """Targets as int64 (N,) class ids or float32 (N, k) values."""
    if classify:
        return torch.as_tensor(y, dtype=torch.int64)
    t = torch.as_tensor(y, dtype=torch.float32)
    return t.unsqueeze(1) if t.dim() == 1 else t


def make_splits(source: Source, spec: DatasetSpec, seed: int) -> Splits:
    """Split `source`, then scale features (and regression targets) with training statistics."""
    check_fractions(spec, official_test=source.x_test is not None)
    train, val, test = split_indices(source, spec, seed)
    x_test_pool = source.x if source.x_test is None else source.x_test
    y_test_pool = source.y if source.y_test is None else source.y_test
    x_train = source.x[train]
    x_mean, x_std = _feature_stats(x_train, source.image)
    classify = source.info.kind == "classification"
    ys = [_targets(source.y[train], classify), _targets(source.y[val], classify),
          _targets(y_test_pool[test], classify)]
    y_mean = y_std = None
    if not classify:
        y_mean = ys[0].mean(dim=0)
        y_std = ys[0].std(dim=0, correction=0)
        y_std = torch.where(y_std < STD_FLOOR, torch.ones_like(y_std), y_std)
        ys = [(t - y_mean) / y_std for t in ys]
    return Splits(
        info=source.info,
        x_train=(x_train - x_mean) / x_std, y_train=ys[0],
        x_val=(source.x[val] - x_mean) / x_std, y_val=ys[1],
        x_test=(x_test_pool[test] - x_mean) / x_std, y_test=ys[2],
        idx_train=torch.from_numpy(train), idx_val=torch.from_numpy(val), idx_test=torch.from_numpy(test),
        x_mean=x_mean, x_std=x_std, y_mean=y_mean, y_std=y_std,
    )
