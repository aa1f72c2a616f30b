"""The breast cancer data as 3 x 10 grids: numpy arrays, from the copy inside scikit-learn's wheel."""

from __future__ import annotations

import numpy as np

STATISTICS = ("mean {}", "{} error", "worst {}")  # the grid's rows, as scikit-learn names the features


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """x (569, 1, 3, 10) float32 (row: statistic, column: measurement) and y (569,) int64 (0 = malignant)."""
    from sklearn.datasets import load_breast_cancer as sklearn_breast_cancer

    bunch = sklearn_breast_cancer()
    names = np.asarray(bunch.feature_names).reshape(3, 10)
    measurements = [str(name).removeprefix("mean ") for name in names[0]]
    expected = [[row.format(m) for m in measurements] for row in STATISTICS]
    if names.tolist() != expected:  # the grid relies on scikit-learn's order of the thirty features
        raise ValueError(f"scikit-learn's breast cancer features are not in the expected order: {names.tolist()}")
    x = bunch.data.astype(np.float32).reshape(-1, 1, 3, 10)
    return x, bunch.target.astype(np.int64)
