"""Dataset types and the split rules, without torch: what the worker's loaders and the web's checks share.

`split_labels` is the split every loader's data goes through (`datasets.core.split_indices` calls it
on a loaded `Source`); `check_split` gives its verdict for the labels alone, so a configuration can be
checked in a process that never imports torch. Both run the same size checks in the same order;
sklearn, which makes the stratified carves, is imported only when a carve is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search_engine.catalog import KINDS


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


def _class_label(class_names: tuple[str, ...] | None, cls: int) -> str:
    """Human-readable name of class id `cls` for messages."""
    if class_names is not None:
        return repr(class_names[cls])
    return str(cls)


def _check_class_counts(class_names: tuple[str, ...] | None, labels: np.ndarray, needed: int, where: str) -> None:
    """Stratified splitting needs two classes and `needed` samples of every class present in `labels`."""
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        found = "no labels" if len(classes) == 0 else f"only class {_class_label(class_names, int(classes[0]))}"
        raise DataError(f"classification needs at least 2 classes, {where} holds {found}")
    worst = int(np.argmin(counts))
    if counts[worst] < needed:
        raise DataError(
            f"too few samples per class for stratification in {where}: class "
            f"{_class_label(class_names, int(classes[worst]))} has {counts[worst]} sample(s), "
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
    from sklearn.model_selection import train_test_split  # 0.7 s to import: only when a split is made

    strat = None if labels is None else labels[indices]
    try:
        rest, carved = train_test_split(indices, test_size=size, random_state=seed, stratify=strat)
    except ValueError as exc:  # sklearn explains e.g. "test_size should be >= number of classes"
        raise DataError(f"cannot carve the {what} split ({len(indices)} samples): {exc}", field=field) from exc
    return np.sort(rest), np.sort(carved)


def _check_pool(y: np.ndarray, classify: bool, official: bool, spec: DatasetSpec,
                class_names: tuple[str, ...] | None) -> tuple[int, int]:
    """The checks before the first carve; (classes every split holds, samples the training split needs)."""
    _check_enough_samples(spec, len(y), official)
    if classify:
        _check_class_counts(class_names, y, 2 if official else 3, "the training pool")
    per_split = len(np.unique(y)) if classify else 1  # a stratified split holds every class
    train_needs = max(per_split, MIN_TRAIN)
    if not official:
        _check_carve(spec, "test_fraction", len(y), spec.test_fraction, per_split=per_split,
                     rest_needs=per_split + train_needs, pool="samples",
                     rest_for="the validation and training splits need")
    return per_split, train_needs


def _check_validation(spec: DatasetSpec, n_pool: int, official: bool, per_split: int, train_needs: int) -> float:
    """Check the validation carve from a pool of `n_pool` samples; its share of that pool."""
    # Rescaled so the validation split is val_fraction of the whole dataset.
    val_share = spec.val_fraction if official else spec.val_fraction / (1.0 - spec.test_fraction)
    _check_carve(spec, "val_fraction", n_pool, val_share, per_split=per_split, rest_needs=train_needs,
                 pool="samples" if official else "samples the test split leaves", rest_for="the training split needs")
    return val_share


def split_labels(y: np.ndarray, classify: bool, n_official_test: int | None, spec: DatasetSpec, seed: int,
                 class_names: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint (train, val, test) index arrays for a pool with labels or targets `y`; with an official
    test split of `n_official_test` samples, test indexes that split. Stratified for classification."""
    labels = y if classify else None
    official = n_official_test is not None
    per_split, train_needs = _check_pool(y, classify, official, spec, class_names)
    pool = np.arange(len(y))
    if official:
        test = np.arange(n_official_test)
    else:
        pool, test = _carve(pool, labels, spec.test_fraction, seed, "test", "test_fraction")
    val_share = _check_validation(spec, len(pool), official, per_split, train_needs)
    train, val = _carve(pool, labels, val_share, seed, "validation", "val_fraction")
    return _subsample(y, classify, train, spec.max_train, seed), val, test


def check_split(y: np.ndarray, classify: bool, official: bool, spec: DatasetSpec, seed: int,
                class_names: tuple[str, ...] | None = None) -> None:
    """Raise the DataError `split_labels` would raise for these labels, without carving where the size
    checks settle it.

    After the size checks one carve can still fail: the validation carve of a classification without
    an official test split, when the test carve leaves some class a single sample (sklearn allots the
    rest at least floor(count * rest / n) of each class, ties broken by the seed). Only then are the
    carves made, with sklearn, exactly as `split_labels` makes them.
    """
    per_split, train_needs = _check_pool(y, classify, official, spec, class_names)
    n = len(y)
    n_pool = n if official else n - math.ceil(spec.test_fraction * n)  # what the test carve leaves
    _check_validation(spec, n_pool, official, per_split, train_needs)
    if not classify or official:
        return
    counts = np.unique(y, return_counts=True)[1]
    if int(counts.min()) * n_pool >= 3 * n:  # every class keeps >= 2 (3, less sklearn's float rounding)
        return
    split_labels(y, classify, None, spec, seed, class_names)


def _subsample(y: np.ndarray, classify: bool, train: np.ndarray, max_train: int | None, seed: int) -> np.ndarray:
    """Keep at most `max_train` training indices, stratified for classification.

    Own quota logic rather than sklearn: sklearn also demands that the *dropped* part holds every
    class, which fails for harmless requests such as dropping just one sample.
    """
    if max_train is None or max_train >= len(train):
        return train
    rng = np.random.default_rng(seed)
    if not classify:
        return np.sort(rng.choice(train, size=max_train, replace=False))
    classes, counts = np.unique(y[train], return_counts=True)
    exact = counts * (max_train / len(train))
    quota = np.floor(exact).astype(np.int64)
    # Largest-remainder rounding: the quotas sum to exactly max_train, each within 1 of its share.
    extra = np.argsort(-(exact - quota), kind="stable")[: max_train - int(quota.sum())]
    quota[extra] += 1
    kept = [
        rng.choice(train[y[train] == c], size=int(q), replace=False)
        for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(kept))


def vision_files(name: str, data_root: str | None, files) -> dict[str, int]:
    """A torchvision set's files under `data_root`, checked to exist: {relative path: size in bytes}.
    DataError naming the missing root or file (the worker's and the web process's check alike)."""
    if not data_root:
        raise DataError(f"dataset {name!r} needs data_root (the folder holding its files)")
    root = Path(data_root)
    try:  # Path.is_dir / is_file let some OSErrors through, e.g. ENAMETOOLONG for a 300-character name
        if not root.is_dir():
            raise DataError(f"data root for {name!r} not found: {root}")
        for rel in files:
            if not (root / rel).is_file():
                raise DataError(f"dataset {name!r}: expected file not found: {root / rel}")
        return {rel: (root / rel).stat().st_size for rel in files}
    except OSError as exc:
        raise DataError(f"data root for {name!r} not found: {root} ({exc.strerror or exc})") from exc
