"""Models a candidate loss is scored with: from logistic regression up to wide residual networks.

`build_model(name, info, seed)` is deterministic given the seed and leaves the global torch RNG
as it found it. `check_model_fits` rejects dataset shapes a model cannot consume, with a
message naming both, before any training starts. An installed plugin's model (`search_engine.plugins`)
is built by its builder under the same seeding; `check_model_fits` also builds it once and runs a
batch of zeros through it, so a builder that fails or gives outputs of the wrong shape is named
(with the plugin's entry point and package) before any training starts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from search_engine import catalog
from search_engine.catalog import MODEL_NAMES
from search_engine.plugins import load_target

if TYPE_CHECKING:  # only for annotations; keeps `import models` free of the dataset stack
    from search_engine.tasks.datasets import DatasetInfo


class ModelShapeError(ValueError):
    """A model cannot consume the dataset's input shape."""


MLP_HIDDEN = 100  # EvoMAL's MLP: two hidden layers of 100 ReLU units


class LeNet5(nn.Module):
    """LeNet-5: conv5x5(6, pad 2)-pool-conv5x5(16)-pool-fc120-fc84-out, ReLU activations."""

    def __init__(self, in_channels: int, height: int, width: int, num_outputs: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        h, w = lenet5_feature_size(height), lenet5_feature_size(width)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * h * w, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def lenet5_feature_size(side: int) -> int:
    """Spatial side after LeNet-5's feature extractor (same-padded conv, pool, valid conv, pool)."""
    return (side // 2 - 4) // 2


class AllCNNC(nn.Module):
    """All-CNN-C (Springenberg et al., 2015): only convolutions, strided convs instead of pooling.

    The paper's dropout (0.2 on the input, 0.5 after each strided conv) is off by default: loss
    candidates are scored on short training runs, where dropout mostly adds noise to the score.
    """

    def __init__(self, in_channels: int, num_outputs: int, dropout: bool = False) -> None:
        super().__init__()

        def conv(c_in: int, c_out: int, k: int, stride: int = 1, pad: int | None = None) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, k, stride, k // 2 if pad is None else pad), nn.ReLU()]

        def drop(p: float) -> list[nn.Module]:
            return [nn.Dropout(p)] if dropout else []

        self.net = nn.Sequential(
            *drop(0.2),
            *conv(in_channels, 96, 3), *conv(96, 96, 3), *conv(96, 96, 3, stride=2), *drop(0.5),
            *conv(96, 192, 3), *conv(192, 192, 3), *conv(192, 192, 3, stride=2), *drop(0.5),
            *conv(192, 192, 3, pad=0), *conv(192, 192, 1),
            nn.Conv2d(192, num_outputs, 1),  # no ReLU: outputs are logits / regression values
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _WideBlock(nn.Module):
    """Pre-activation residual block of a WideResNet: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = dropout
        # A 1x1 projection only where the identity cannot be added (channels or resolution change).
        needs_projection = c_in != c_out or stride != 1
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(pre)
        out = F.relu(self.bn2(self.conv1(pre)))
        out = F.dropout(out, self.dropout, self.training)
        return self.conv2(out) + identity


class WideResNet(nn.Module):
    """WRN-depth-k (Zagoruyko & Komodakis, 2016): 3 groups of (depth-4)/6 wide pre-activation blocks.

    EvoMAL used WRN-28-10; the registry default here is WRN-16-4, which trains in reasonable
    time on a CPU. Pass depth/widen_factor to build the paper's configuration.
    """

    def __init__(self, in_channels: int, num_outputs: int, depth: int = 16, widen_factor: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"WideResNet widen_factor must be >= 1, got {widen_factor}")
        blocks_per_group = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
        for group, stride in enumerate((1, 2, 2)):
            for i in range(blocks_per_group):
                c_in = widths[group] if i == 0 else widths[group + 1]
                layers.append(_WideBlock(c_in, widths[group + 1], stride if i == 0 else 1, dropout))
        layers += [nn.BatchNorm2d(widths[3]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[3], num_outputs)
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _init_conv_bn(model: nn.Module) -> None:
    """He-normal convolutions (fan-out), unit BatchNorm, zero linear biases: the usual ResNet init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def _resnet18(info: DatasetInfo) -> nn.Module:
    """torchvision ResNet-18 with the usual small-image stem: 3x3 stride-1 conv, no max-pool."""
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=info.n_outputs)
    model.conv1 = nn.Conv2d(info.input_shape[0], 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def _flat_size(info: DatasetInfo) -> int:
    """Number of input features once a sample is flattened."""
    return math.prod(info.input_shape)


# catalogue name -> builder(info) -> module (a test checks both lists agree); pure functions, the RNG is seeded around the call.
_BUILDERS = {
    "logistic": lambda info: nn.Sequential(nn.Flatten(), nn.Linear(_flat_size(info), info.n_outputs)),
    "mlp": lambda info: nn.Sequential(
        nn.Flatten(), nn.Linear(_flat_size(info), MLP_HIDDEN), nn.ReLU(),
        nn.Linear(MLP_HIDDEN, MLP_HIDDEN), nn.ReLU(), nn.Linear(MLP_HIDDEN, info.n_outputs),
    ),
    "lenet5": lambda info: LeNet5(*info.input_shape, info.n_outputs),
    "allcnnc": lambda info: AllCNNC(info.input_shape[0], info.n_outputs),
    "resnet18": _resnet18,
    "wideresnet": lambda info: WideResNet(info.input_shape[0], info.n_outputs),
}

# Smallest image side each image model accepts. lenet5 and allcnnc need it for their valid
# convolutions to have an input (lenet5_feature_size(12) == 1; All-CNN-C: 9 -> 5 -> 3 -> 1);
# resnet18 (3 stride-2 stages) and wideresnet (2) should shrink to at least 1x1 at their last stage.
_MIN_IMAGE_SIDE = {"lenet5": 12, "allcnnc": 9, "resnet18": 8, "wideresnet": 4}


def check_model_fits(name: str, info: DatasetInfo) -> None:
    """Raise if model `name` cannot consume `info`'s inputs (ValueError for unknown names).

    Flat models (logistic, mlp) flatten any input; image models need (C, H, W) inputs with H and
    W at least their minimum side. A plugin's model is checked against its facts, then built once
    and run on a batch of zeros (`_check_plugin_output`).
    """
    if name not in MODEL_NAMES:
        if catalog.plugin_model(name) is None:
            raise ValueError(f"unknown model {name!r}; known models: {', '.join(catalog.model_names())}")
        _check_plugin_facts(name, info)
        _check_plugin_output(name, _build_plugin(name, info, 0), info)
        return
    if name not in _MIN_IMAGE_SIDE:
        return
    side = _MIN_IMAGE_SIDE[name]
    shape = info.input_shape
    if len(shape) != 3 or min(shape[1:]) < side or shape[0] < 1:
        raise ModelShapeError(
            f"{name} needs image input of at least {side}x{side} with shape (C, H, W); "
            f"dataset {info.name!r} gives {shape}"
        )


def build_model(name: str, info: DatasetInfo, seed: int) -> nn.Module:
    """A freshly initialised model for `info`, identical for equal seeds; global RNG untouched."""
    if name not in MODEL_NAMES and catalog.plugin_model(name) is not None:
        _check_plugin_facts(name, info)  # its output was checked once, by check_model_fits
        return _build_plugin(name, info, seed)
    check_model_fits(name, info)
    return _seeded(lambda: _BUILDERS[name](info), seed)


def _seeded(build, seed: int) -> nn.Module:
    """`build()` with the CPU generator seeded by `seed`, restored afterwards."""
    # fork_rng restores the CPU generator afterwards; only the CPU generator is seeded because
    # torch.manual_seed would also reseed (and so disturb) every CUDA generator.
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return build()


def _check_plugin_facts(name: str, info: DatasetInfo) -> None:
    """The fit the plugin's facts promise (kinds, image side, feature count), as configuration checks see it."""
    problem = catalog.model_fit_problem(name, info.name, info.kind, info.input_shape)
    if problem:
        raise ModelShapeError(problem)


def _build_plugin(name: str, info: DatasetInfo, seed: int) -> nn.Module:
    """The plugin's builder called with (info, seed) under the seeded generator; ValueError naming the plugin."""
    plugged = catalog.plugin_model(name)
    where = f"plugin model {name!r} ({plugged.origin})"
    builder = load_target(plugged.facts.builder, where)
    try:
        model = _seeded(lambda: builder(info, seed), seed)
    except Exception as exc:  # the plugin's own code: reported as its failure, with the dataset it was built for
        raise ValueError(f"{where}: its builder {plugged.facts.builder} failed for dataset {info.name!r} "
                         f"{info.input_shape}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ValueError(f"{where}: its builder {plugged.facts.builder} returned a {type(model).__name__}, "
                         "not a torch.nn.Module")
    return model


def _check_plugin_output(name: str, model: nn.Module, info: DatasetInfo) -> None:
    """A batch of two zero samples through `model` (in eval mode: no statistics change) must give
    (2, n_outputs) outputs; ModelShapeError naming the plugin otherwise."""
    plugged = catalog.plugin_model(name)
    where, expected = f"plugin model {name!r} ({plugged.origin})", (2, info.n_outputs)
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *info.input_shape))
    except Exception as exc:  # the plugin's forward: its failure on this data
        raise ModelShapeError(f"{where} does not fit dataset {info.name!r}: a batch of shape "
                              f"{(2, *info.input_shape)} fails in its forward: {type(exc).__name__}: {exc}") from exc
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != expected:
        raise ModelShapeError(f"{where} does not fit dataset {info.name!r}: a batch of shape {(2, *info.input_shape)} "
                              f"gives outputs {shape}, the task needs {expected} ({info.n_outputs} per sample)")
