"""Datasets for loss-function learning: built-in (sklearn), user files (csv, npz), torchvision sets and
the data sets of installed plugins (`plugin_data`).

Public API:
    describe_dataset(spec) -> DatasetInfo   cheap: shapes and sizes without loading the data
    check_dataset(spec, seed) -> DatasetInfo  describe, plus: can load_dataset split it? (validation)
    load_dataset(spec, seed) -> Splits      disjoint, stratified, seeded train/val/test splits
Every bad input raises `DataError` with a message naming the file, column, key or path at fault.
"""

from __future__ import annotations

from search_engine import catalog
from search_engine.catalog import DATASET_NAMES
from search_engine.tasks.datasets.builtin import describe_builtin, load_diabetes_source, load_digits_source
from search_engine.tasks.datasets.core import (
    DataError,
    DatasetInfo,
    DatasetSpec,
    Splits,
    check_fractions,
    make_splits,
    split_indices,
)
from search_engine.tasks.datasets.plugin_data import describe_plugin, load_plugin_source
from search_engine.tasks.datasets.tabular import describe_csv, describe_npz, load_csv_source, load_npz_source
from search_engine.tasks.datasets.vision import VISION_SETS, describe_vision, load_vision_source

__all__ = [
    "DATASET_NAMES", "DataError", "DatasetInfo", "DatasetSpec", "Splits", "check_dataset", "describe_dataset",
    "load_dataset",
]

# built-in catalogue name -> (describe(spec) -> DatasetInfo, load(spec) -> Source); a test checks both lists
# agree. A plugin's data set takes (describe_plugin, load_plugin_source).
_HANDLERS = {
    "digits": (describe_builtin, load_digits_source),
    "digits28": (describe_builtin, load_digits_source),
    "diabetes": (describe_builtin, load_diabetes_source),
    "csv": (describe_csv, load_csv_source),
    "npz": (describe_npz, load_npz_source),
    "mnist": (describe_vision, load_vision_source),
    "fashion_mnist": (describe_vision, load_vision_source),
    "cifar10": (describe_vision, load_vision_source),
    "cifar100": (describe_vision, load_vision_source),
    "svhn": (describe_vision, load_vision_source),
}


def _handlers(spec: DatasetSpec):
    """The (describe, load) pair for `spec.name` after checking the spec's split settings."""
    plugged = spec.name not in _HANDLERS and catalog.plugin_dataset(spec.name) is not None
    if spec.name not in _HANDLERS and not plugged:
        raise DataError(f"unknown dataset {spec.name!r}; known datasets: {', '.join(catalog.dataset_names())}")
    # Checked before any loading so a bad fraction never costs a full dataset read.
    check_fractions(spec, official_test=spec.name in VISION_SETS)
    return (describe_plugin, load_plugin_source) if plugged else _HANDLERS[spec.name]


def describe_dataset(spec: DatasetSpec) -> DatasetInfo:
    """Kind, per-sample input shape and output count of a dataset, without loading its data.

    Built-ins and plugin sets are described from static facts; csv/npz from the header, labels and array shapes;
    torchvision sets after checking that `data_root` and every expected file exist.
    """
    return _handlers(spec)[0](spec)


def check_dataset(spec: DatasetSpec, seed: int) -> DatasetInfo:
    """`describe_dataset`, and the check that `load_dataset` can split the data with `spec`'s
    fractions: the very split it makes, run on the labels, so the two never disagree.

    Built-in and csv/npz data are read for it (csv/npz are parsed by describe_dataset anyway);
    torchvision sets are only described: their official splits are not read at validation.
    A DataError's `field` says which fraction to change when the data itself is not at fault.
    """
    describe, load = _handlers(spec)
    if spec.name in VISION_SETS:
        return describe(spec)
    source = load(spec)
    split_indices(source, spec, seed)
    return source.info


def load_dataset(spec: DatasetSpec, seed: int) -> Splits:
    """Load, split (seeded, stratified for classification) and scale a dataset.

    Validation is carved out of the training data; torchvision sets keep their official test
    split (`test_fraction` is ignored). Scaling uses training statistics only.
    """
    return make_splits(_handlers(spec)[1](spec), spec, seed)
