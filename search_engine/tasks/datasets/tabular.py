"""User datasets from files: CSV (header row, numeric features, one label column) and NPZ arrays.

The files are read and checked by `search_engine.tasks.user_files` (numpy only, so the web process
checks a submitted file with the very code a worker loads it with); here the features become tensors.
"""

from __future__ import annotations

import torch

from search_engine.tasks.datasets.core import DatasetInfo, DatasetSpec, Source
from search_engine.tasks.user_files import (  # noqa: F401 (re-exported: the loaders' constants)
    MAX_ABS_VALUE,
    NPZ_DEFAULT_LABEL_KEY,
    NPZ_FEATURES_KEY,
    POLL_ROWS,
    UserData,
    read_csv,
    read_npz,
)


def _source(data: UserData) -> Source:
    return Source(info=data.info, x=torch.from_numpy(data.x), y=data.y, image=False, class_names=data.class_names)


def describe_csv(spec: DatasetSpec) -> DatasetInfo:
    """Info of a CSV dataset. The whole file is parsed, so a bad feature value is reported at
    validation time (for example when a web form is submitted), not later inside a worker."""
    return read_csv(spec).info


def load_csv_source(spec: DatasetSpec) -> Source:
    """Parse and validate a CSV dataset."""
    return _source(read_csv(spec))


def describe_npz(spec: DatasetSpec) -> DatasetInfo:
    """Info of an NPZ dataset; the arrays are loaded and checked, as for CSV."""
    return read_npz(spec).info


def load_npz_source(spec: DatasetSpec) -> Source:
    """Load and validate an NPZ dataset."""
    return _source(read_npz(spec))
