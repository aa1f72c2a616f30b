"""The data sets of installed plugins: the plugin's loader called, and its arrays checked against its facts.

A plugin's facts (`search_engine.plugins.DatasetPlugin`) promise a kind, a sample shape, a number of
classes or targets and the sample (or class) counts; configuration checks rely on them without
loading anything, so the arrays the loader returns must keep every promise. A loader that fails or
breaks one is a DataError that names the plugin's entry point and package.
"""

from __future__ import annotations

import numpy as np
import torch

from search_engine import catalog
from search_engine.plugins import PluginLoadError, load_target
from search_engine.tasks.datasets.core import DataError, DatasetInfo, DatasetSpec, Source


def _plugged(name: str):
    plugged = catalog.plugin_dataset(name)
    if plugged is None:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(catalog.dataset_names())}")
    return plugged


def describe_plugin(spec: DatasetSpec) -> DatasetInfo:
    """Info of a plugin's data set from its facts (no loading)."""
    facts = _plugged(spec.name).facts
    return DatasetInfo(facts.name, facts.kind, facts.input_shape, facts.n_outputs)


def load_plugin_source(spec: DatasetSpec) -> Source:
    """The arrays of the plugin's loader as a Source, after checking them against its facts."""
    plugged = _plugged(spec.name)
    facts, where = plugged.facts, f"plugin data set {spec.name!r} ({plugged.origin})"
    try:
        loader = load_target(facts.loader, where)
    except PluginLoadError as exc:
        raise DataError(str(exc)) from exc
    try:
        arrays = loader()
    except Exception as exc:  # whatever the plugin's own code raises is reported as the plugin's failure
        raise DataError(f"{where}: its loader {facts.loader} failed: {type(exc).__name__}: {exc}") from exc
    x, y = checked_arrays(arrays, facts, f"{where}: its loader {facts.loader}")
    info = DatasetInfo(facts.name, facts.kind, facts.input_shape, facts.n_outputs)
    return Source(info=info, x=torch.from_numpy(x), y=y, image=facts.image)


def checked_arrays(arrays, facts, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(x float32, y int64 class ids or float32 targets) from a loader's return value; DataError naming
    `what` and the broken promise otherwise."""
    if not isinstance(arrays, tuple | list) or len(arrays) != 2:
        raise DataError(f"{what} must return a pair (x, y) of numpy arrays, got {type(arrays).__name__}")
    try:
        x, y = np.asarray(arrays[0], dtype=np.float32), np.asarray(arrays[1])
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} returned features that are not an array of numbers: {exc}") from exc
    n = facts.sample_count
    if x.shape != (n, *facts.input_shape):
        raise DataError(f"{what} returned features of shape {x.shape}; the plugin's facts promise "
                        f"{(n, *facts.input_shape)} ({n} samples of shape {facts.input_shape})")
    if not np.isfinite(x).all():
        raise DataError(f"{what} returned features that are not all finite numbers (NaN or infinity)")
    if facts.kind == "classification":
        return np.ascontiguousarray(x), _class_ids(y, facts, what)
    return np.ascontiguousarray(x), _targets(y, facts, what)


def _class_ids(y: np.ndarray, facts, what: str) -> np.ndarray:
    n = facts.sample_count
    if y.shape != (n,) or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"{what} returned labels of shape {y.shape} ({y.dtype}); expected {n} class ids, shape ({n},)")
    ids = y.astype(np.int64)
    if not np.array_equal(ids, y) or ids.min() < 0 or ids.max() >= facts.n_outputs:
        raise DataError(f"{what} returned labels that are not whole numbers from 0 to {facts.n_outputs - 1}")
    counts = tuple(int(c) for c in np.bincount(ids, minlength=facts.n_outputs))
    if counts != facts.class_counts:
        raise DataError(f"{what} returned class counts {counts}; the plugin's facts promise {facts.class_counts}")
    return ids


def _targets(y: np.ndarray, facts, what: str) -> np.ndarray:
    n, k = facts.sample_count, facts.n_outputs
    shapes = [(n, k)] + ([(n,)] if k == 1 else [])
    if y.shape not in shapes or not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        raise DataError(f"{what} returned targets of shape {y.shape} ({y.dtype}); expected real numbers of shape "
                        f"{' or '.join(map(str, shapes))}")
    targets = y.astype(np.float32)
    if not np.isfinite(targets).all():
        raise DataError(f"{what} returned targets that are not all finite numbers (NaN or infinity)")
    return targets.reshape(n, k)
