"""Datasets bundled with scikit-learn (real data, no download): digits, digits28, diabetes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from search_engine.tasks.datasets.core import DatasetInfo, DatasetSpec, Source

# Static descriptions, so describe_dataset never loads anything for built-ins.
BUILTIN_INFO = {
    "digits": DatasetInfo("digits", "classification", (1, 8, 8), 10),
    "digits28": DatasetInfo("digits28", "classification", (1, 28, 28), 10),
    "diabetes": DatasetInfo("diabetes", "regression", (10,), 1),
}

DIGITS_MAX_PIXEL = 16.0  # sklearn's digits are 4-bit intensities in [0, 16]


def describe_builtin(spec: DatasetSpec) -> DatasetInfo:
    """Info of a built-in dataset (no loading)."""
    return BUILTIN_INFO[spec.name]


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """Raw sklearn digits: images (N, 8, 8) in [0, 16] and int64 labels (N,)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target.astype(np.int64)


def load_digits_source(spec: DatasetSpec) -> Source:
    """Digits as (N, 1, 8, 8) images scaled to [0, 1]; `digits28` upsampled to 28x28."""
    images, labels = digits_images()
    x = torch.from_numpy(images.astype(np.float32) / DIGITS_MAX_PIXEL).unsqueeze(1)
    info = BUILTIN_INFO[spec.name]
    if info.input_shape[1:] != x.shape[2:]:
        # Bilinear interpolation is a convex combination of pixels, so values stay in [0, 1].
        x = F.interpolate(x, size=info.input_shape[1:], mode="bilinear", align_corners=False)
    return Source(info=info, x=x.contiguous(), y=labels, image=True)


def load_diabetes_source(spec: DatasetSpec) -> Source:
    """Diabetes regression with the original (unscaled) features; scaling happens after splitting."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    x = torch.from_numpy(bunch.data.astype(np.float32))
    y = bunch.target.astype(np.float32).reshape(-1, 1)
    return Source(info=BUILTIN_INFO["diabetes"], x=x, y=y, image=False)
