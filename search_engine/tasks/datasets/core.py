"""Dataset types and the split/scaling logic shared by every dataset loader.

Loaders (built-in, tabular, torchvision) only produce a `Source`: raw examples with features in
their natural range. `make_splits` turns a `Source` into `Splits` the same way for all of them,
so the split and scaling rules (disjoint, stratified, seeded, training statistics only) live in
one place.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from search_engine.catalog import KINDS

# Standard deviations below this are treated as "constant": the feature is only centred.
# Dividing by a tiny std would blow unseen (val/test) values up to huge magnitudes.
STD_FLOOR = 1e-6


class DataError(ValueError):
    """A dataset could not be described or loaded; the message names the culprit.

    `field` names the DatasetSpec field to change when it is not the data itself
    ("val_fraction", "test_fraction"); None means the data (file, folder or dataset) is at fault.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset before any data is loaded."""

    name: str
    kind: str  # "classification" | "regression"
    input_shape: tuple[int, ...]  # per-sample feature shape, e.g. (64,) or (1, 28, 28)
    n_outputs: int  # number of classes, or number of regression targets

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"dataset {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.n_outputs < 1:
            raise DataError(f"dataset {self.name!r}: n_outputs must be >= 1, got {self.n_outputs}")
        # Normalise lists/np ints so infos compare and hash predictably.
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))


@dataclass(frozen=True)
class DatasetSpec:
    """Which dataset to load and how to split it."""

    name: str
    data_root: str | None = None  # folder for torchvision sets
    data_file: str | None = None  # csv / npz user data
    label: str | None = None  # csv: label column (default last); npz: label key (default "y")
    kind: str | None = None  # csv/npz only: "classification" | "regression"
    val_fraction: float = 0.2
    test_fraction: float = 0.2  # ignored by torchvision sets (official test split)
    max_train: int | None = None  # optional (stratified) subsample of the training split


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


def check_fractions(spec: DatasetSpec, official_test: bool) -> None:
    """Reject split fractions that cannot give three non-empty splits."""
    fractions = {"val_fraction": spec.val_fraction}
    if not official_test:
        fractions["test_fraction"] = spec.test_fraction
    for field, value in fractions.items():
        if not 0.0 < value < 1.0:
            raise DataError(f"{field} must be strictly between 0 and 1, got {value}")
    if sum(fractions.values()) >= 1.0:
        raise DataError(
            f"val_fraction + test_fraction must be below 1 (nothing left to train on), "
            f"got {spec.val_fraction} + {spec.test_fraction}"
        )
    if spec.max_train is not None and spec.max_train < 1:
        raise DataError(f"max_train must be a positive number of samples, got {spec.max_train}")


def _class_label(source: Source, cls: int) -> str:
    """Human-readable name of class id `cls` for messages."""
    if source.class_names is not None:
        return repr(source.class_names[cls])
    return str(cls)


def _check_class_counts(source: Source, labels: np.ndarray, needed: int, where: str) -> None:
    """Stratified splitting needs two classes and `needed` samples of every class present in `labels`."""
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        found = "no labels" if len(classes) == 0 else f"only class {_class_label(source, int(classes[0]))}"
        raise DataError(f"classification needs at least 2 classes, {where} holds {found}")
    worst = int(np.argmin(counts))
    if counts[worst] < needed:
        raise DataError(
            f"too few samples per class for stratification in {where}: class "
            f"{_class_label(source, int(classes[worst]))} has {counts[worst]} sample(s), "
            f"every class needs at least {needed}"
        )


# Fewest training samples a search may end with (the same floor as max_train's).
MIN_TRAIN = 2


def _check_enough_samples(spec: DatasetSpec, n: int, official_test: bool) -> None:
    """Training (MIN_TRAIN), validation and, without an official test split, test samples."""
    needed = MIN_TRAIN + 1 + (0 if official_test else 1)
    if n < needed:
        data = f"data file {spec.data_file}" if spec.data_file else f"dataset {spec.name!r}"
        splits = "training and validation" if official_test else "training, validation and test"
        raise DataError(f"{data} has {n} sample(s); the {splits} splits need at least {needed} "
                        f"({MIN_TRAIN} to train on, 1 for each other split)")


def _check_carve(spec: DatasetSpec, field: str, n: int, share: float, *, per_split: int, rest_needs: int,
                 pool: str, rest_for: str) -> None:
    """Refuse a carve that leaves the carved split or the rest too small, with the sizes sklearn uses
    (ceil(share * n) carved); `per_split` is the number of classes a stratified split must each hold."""
    what, value = ("test" if field == "test_fraction" else "validation"), getattr(spec, field)
    carved = math.ceil(share * n)
    rest = n - carved
    if carved < per_split:
        raise DataError(
            f"the {what} split ({field} {value:g}) would hold {carved} of the {n} {pool}, fewer than the "
            f"{per_split} classes it must each contain; raise {field} or add data", field=field)
    if rest < rest_needs:
        raise DataError(
            f"the {what} split ({field} {value:g}) would take {carved} of the {n} {pool} and leave {rest}, "
            f"fewer than the {rest_needs} {rest_for}; lower {field} or add data", field=field)


def _carve(indices: np.ndarray, labels: np.ndarray | None, size: float | int, seed: int, what: str, field: str):
    """Split `indices` into (rest, carved) with `size` going to `carved`; stratified when labelled."""
    strat = None if labels is None else labels[indices]
    try:
        rest, carved = train_test_split(indices, test_size=size, random_state=seed, stratify=strat)
    except ValueError as exc:  # sklearn explains e.g. "test_size should be >= number of classes"
        raise DataError(f"cannot carve the {what} split ({len(indices)} samples): {exc}", field=field) from exc
    return np.sort(rest), np.sort(carved)


def split_indices(source: Source, spec: DatasetSpec, seed: int) -> tuple[np.ndarray, ...]:
    """Disjoint (train, val, test) index arrays; test indexes the official test set if present."""
    classify = source.info.kind == "classification"
    labels = source.y if classify else None
    pool = np.arange(len(source.y))
    official = source.x_test is not None
    _check_enough_samples(spec, len(pool), official)
    if classify:
        _check_class_counts(source, source.y, 2 if official else 3, "the training pool")
    per_split = len(np.unique(source.y)) if classify else 1  # a stratified split holds every class
    train_needs = max(per_split, MIN_TRAIN)
    if official:
        test = np.arange(len(source.y_test))
        val_share = spec.val_fraction
    else:
        _check_carve(spec, "test_fraction", len(pool), spec.test_fraction, per_split=per_split,
                     rest_needs=per_split + train_needs, pool="samples", rest_for="the validation and training splits need")
        pool, test = _carve(pool, labels, spec.test_fraction, seed, "test", "test_fraction")
        # Rescale so the validation split is val_fraction of the whole dataset.
        val_share = spec.val_fraction / (1.0 - spec.test_fraction)
    _check_carve(spec, "val_fraction", len(pool), val_share, per_split=per_split, rest_needs=train_needs,
                 pool="samples" if official else "samples the test split leaves", rest_for="the training split needs")
    train, val = _carve(pool, labels, val_share, seed, "validation", "val_fraction")
    return _subsample(source, train, spec.max_train, seed), val, test


def _subsample(source: Source, train: np.ndarray, max_train: int | None, seed: int) -> np.ndarray:
    """Keep at most `max_train` training indices, stratified for classification.

    Own quota logic rather than sklearn: sklearn also demands that the *dropped* part holds every
    class, which fails for harmless requests such as dropping just one sample.
    """
    if max_train is None or max_train >= len(train):
        return train
    rng = np.random.default_rng(seed)
    if source.info.kind != "classification":
        return np.sort(rng.choice(train, size=max_train, replace=False))
    classes, counts = np.unique(source.y[train], return_counts=True)
    exact = counts * (max_train / len(train))
    quota = np.floor(exact).astype(np.int64)
    # Largest-remainder rounding: the quotas sum to exactly max_train, each within 1 of its share.
    extra = np.argsort(-(exact - quota), kind="stable")[: max_train - int(quota.sum())]
    quota[extra] += 1
    kept = [
        rng.choice(train[source.y[train] == c], size=int(q), replace=False)
        for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(kept))


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
