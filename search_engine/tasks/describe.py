"""A task's data and model checked without torch: what a web page runs before it stores a configuration.

`check_dataset(spec, seed)` gives the verdict of the worker's `datasets.check_dataset` (the same
DataError, message and field) from the catalogue's facts and the files' own contents read with numpy:
built-in and plugin data from `catalog.data_facts` (a plugin's loader is never called here), CSV/NPZ
files parsed in full (`user_files`), torchvision folders from their file list and, for MNIST-style
sets, the idx headers (CIFAR and SVHN files are never unpickled or parsed here). `check_model_fits` is
`networks.check_model_fits` from the catalogue's model facts (`catalog.model_fit_problem`), no network
built. Only workers import the numeric stack.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from search_engine import catalog
from search_engine.tasks import user_files
from search_engine.tasks.dataspec import (
    DataError,
    DatasetInfo,
    DatasetSpec,
    check_fractions,
    check_split,
    vision_files,
)

__all__ = ["DataError", "DatasetInfo", "DatasetSpec", "check_dataset", "check_model_fits", "describe_dataset"]

_MNIST_STYLE = ("mnist", "fashion_mnist")
_IDX_UBYTE = 0x08  # the idx type code of unsigned bytes, the only one torchvision's MNIST reads


def describe_dataset(spec: DatasetSpec) -> DatasetInfo:
    """Kind, per-sample input shape and output count, as `datasets.describe_dataset` gives them."""
    _check_name(spec)
    if spec.name in catalog.FILE_DATASETS:
        return _read_user_file(spec).info
    if spec.name in catalog.VISION_DATASETS:
        return _check_vision(spec)
    return _builtin_info(spec.name)


def check_dataset(spec: DatasetSpec, seed: int) -> DatasetInfo:
    """`describe_dataset`, and whether the worker can split the data with `spec`'s fractions and `seed`.

    Raises the DataError the worker's `datasets.check_dataset` raises; for MNIST-style sets it also
    refuses idx files whose headers the worker could not load.
    """
    _check_name(spec)
    if spec.name in catalog.VISION_DATASETS:
        return _check_vision(spec)  # official splits: not split at validation, as in the worker
    if spec.name in catalog.FILE_DATASETS:
        data = _read_user_file(spec)
        info, y, names = data.info, data.y, data.class_names
    else:
        info, y, names = _builtin_info(spec.name), _builtin_labels(spec.name), None
    check_split(y, info.kind == "classification", False, spec, seed, names)
    return info


def check_model_fits(name: str, info: DatasetInfo) -> None:
    """Raise ValueError if model `name` cannot consume `info`'s inputs (the worker's check and message)."""
    names = catalog.model_names()
    if name not in names:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(names)}")
    problem = catalog.model_fit_problem(name, info.name, info.kind, info.input_shape)
    if problem:
        raise ValueError(problem)


def _check_name(spec: DatasetSpec) -> None:
    """A known dataset name and split fractions that can give every split (checked before any reading)."""
    names = catalog.dataset_names()
    if spec.name not in names:
        raise DataError(f"unknown dataset {spec.name!r}; known datasets: {', '.join(names)}")
    check_fractions(spec, official_test=spec.name in catalog.VISION_DATASETS)


def _read_user_file(spec: DatasetSpec) -> user_files.UserData:
    return user_files.read_csv(spec) if spec.name == "csv" else user_files.read_npz(spec)


def _builtin_info(name: str) -> DatasetInfo:
    """A built-in or plugin dataset's info from its facts."""
    facts = catalog.data_facts(name)
    return DatasetInfo(name, catalog.dataset_kind(name), facts.input_shape, facts.n_outputs)


def _builtin_labels(name: str) -> np.ndarray:
    """Labels with the built-in or plugin set's class counts (a split's verdict depends on the counts
    alone), or placeholder targets for regression."""
    facts = catalog.data_facts(name)
    if not facts.class_counts:
        return np.zeros(facts.n_samples, dtype=np.float32)
    return np.repeat(np.arange(len(facts.class_counts), dtype=np.int64), facts.class_counts)


def _check_vision(spec: DatasetSpec) -> DatasetInfo:
    """The set's info after checking that its root and every expected file exist and are not empty."""
    facts = catalog.DATA_FACTS[spec.name]
    sizes = vision_files(spec.name, spec.data_root, facts.files)
    root = Path(spec.data_root)
    empty = next((rel for rel, size in sizes.items() if size == 0), None)
    if empty is not None:
        raise DataError(f"dataset {spec.name!r}: file is empty: {root / empty}")
    info = DatasetInfo(spec.name, catalog.dataset_kind(spec.name), facts.input_shape, facts.n_outputs)
    if spec.name in _MNIST_STYLE:
        for train, (images, labels) in ((True, facts.files[:2]), (False, facts.files[2:])):
            _check_idx_pair(spec, info, root / images, root / labels, train)
    return info


def _check_idx_pair(spec: DatasetSpec, info: DatasetInfo, images: Path, labels: Path, train: bool) -> None:
    """An images file (N, H, W) and a labels file (N,) in the idx format, as the worker needs them."""
    what = f"{spec.name} {'train' if train else 'test'} split under {spec.data_root}"
    image_dims = _idx_dims(images, 3, what)
    label_dims = _idx_dims(labels, 1, what)
    if (1, *image_dims[1:]) != info.input_shape:
        raise DataError(f"{what}: images have shape {(1, *image_dims[1:])}, expected {info.input_shape}")
    if image_dims[0] != label_dims[0]:
        raise DataError(f"{what}: {image_dims[0]} images but {label_dims[0]} labels")


def _idx_dims(path: Path, ndim: int, what: str) -> tuple[int, ...]:
    """The dimensions an idx file of unsigned bytes announces, checked against the bytes it holds."""
    header = 4 * (1 + ndim)
    try:
        with path.open("rb") as fh:
            head = fh.read(header)
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot parse {what}: cannot read {path}: {exc.strerror or exc}") from exc
    expected = (_IDX_UBYTE << 8) | ndim
    magic = struct.unpack(">I", head[:4])[0] if len(head) >= 4 else None
    if magic != expected or len(head) < header:
        found = "too short" if magic is None or len(head) < header else f"magic number {magic:#010x}"
        raise DataError(f"cannot parse {what}: {path} is not an idx file of {ndim}-dimensional unsigned "
                        f"bytes (expected magic number {expected:#010x}; {found})")
    dims = struct.unpack(f">{ndim}I", head[4:])
    announced = math.prod(dims)
    if size - header != announced:
        raise DataError(f"cannot parse {what}: {path} announces {'x'.join(map(str, dims))} bytes of data "
                        f"({announced}) but holds {size - header}")
    return dims
