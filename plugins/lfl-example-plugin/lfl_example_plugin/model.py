"""`grid_cnn`: a small convolutional network over (C, H, W) grids of at least 2x2."""

from __future__ import annotations

from torch import nn

HIDDEN = 64  # units of the hidden linear layer


def build_grid_cnn(info, seed: int) -> nn.Module:
    """conv3x3(16)-ReLU-conv3x3(32)-ReLU-maxpool2x2-fc64-ReLU-out for `info.input_shape` (C, H, W).

    `seed` is unused: lfl seeds torch's generator with it around this call. The layers form one
    nn.Sequential of Conv2d, ReLU, MaxPool2d, Flatten and Linear, so lfl trains a population of it
    as one batched program.
    """
    channels, height, width = info.input_shape
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (height // 2) * (width // 2), HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, info.n_outputs),
    )
