"""Tests for search_engine.tasks.networks: shapes, shape rejection, seeded determinism, RNG hygiene."""

from __future__ import annotations

import pytest
import torch

from search_engine.tasks.datasets import DatasetInfo
from search_engine.tasks.networks import (
    MODEL_NAMES,
    ModelShapeError,
    WideResNet,
    build_model,
    check_model_fits,
)

DIABETES = DatasetInfo("diabetes", "regression", (10,), 1)
DIGITS = DatasetInfo("digits", "classification", (1, 8, 8), 10)
DIGITS28 = DatasetInfo("digits28", "classification", (1, 28, 28), 10)
CIFAR = DatasetInfo("cifar10", "classification", (3, 32, 32), 10)

# A dataset each model fits, kept as small as the model allows so the forward passes stay fast.
FITTING = {
    "logistic": DIGITS,
    "mlp": DIABETES,
    "lenet5": DIGITS28,
    "allcnnc": DatasetInfo("tiny", "regression", (3, 9, 9), 2),
    "resnet18": DatasetInfo("tiny", "classification", (2, 8, 8), 5),
    "wideresnet": DatasetInfo("tiny", "classification", (3, 4, 4), 3),
}


def _forward(model: torch.nn.Module, info: DatasetInfo, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        return model.eval()(torch.randn(batch, *info.input_shape, generator=gen))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shape_on_fitting_dataset(name):
    info = FITTING[name]
    out = _forward(build_model(name, info, seed=0), info)
    assert out.shape == (2, info.n_outputs) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["lenet5", "allcnnc", "resnet18", "wideresnet"])
def test_image_models_run_on_cifar_shaped_input_and_train_mode(name):
    model = build_model(name, CIFAR, seed=0).train()
    out = model(torch.randn(2, *CIFAR.input_shape, generator=torch.Generator().manual_seed(1)))
    out.sum().backward()  # train-mode BatchNorm/dropout paths work and gradients reach the input layer
    assert out.shape == (2, 10)
    assert all(p.grad is not None for p in model.parameters())


def test_flat_models_accept_any_shape():
    for info in (DIABETES, DIGITS, CIFAR):
        for name in ("logistic", "mlp"):
            check_model_fits(name, info)
            assert _forward(build_model(name, info, seed=1), info).shape == (2, info.n_outputs)


def test_mlp_is_evomal_like():
    linears = [m for m in build_model("mlp", DIGITS, seed=0).modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 100), (100, 100), (100, 10)]


@pytest.mark.parametrize(
    "name, info, message",
    [("lenet5", DIABETES, r"lenet5 needs image input of at least 12x12 with shape \(C, H, W\); "
                          r"dataset 'diabetes' gives \(10,\)"),
     ("lenet5", DIGITS, r"at least 12x12 .* dataset 'digits' gives \(1, 8, 8\)"),
     ("lenet5", DatasetInfo("x", "classification", (1, 11, 40), 2), r"at least 12x12"),
     ("allcnnc", DatasetInfo("x", "classification", (3, 8, 8), 2), r"allcnnc needs .* at least 9x9"),
     ("resnet18", DatasetInfo("x", "classification", (64,), 2), r"resnet18 needs image input"),
     ("wideresnet", DatasetInfo("x", "classification", (3, 3, 3), 2), r"wideresnet needs .* at least 4x4")],
)
def test_rejects_non_fitting_shapes(name, info, message):
    with pytest.raises(ModelShapeError, match=message):
        check_model_fits(name, info)
    with pytest.raises(ModelShapeError):
        build_model(name, info, seed=0)


def test_minimum_sizes_are_exact():
    """The documented minimum side works and one pixel less is rejected (not a crash in forward)."""
    for name, side in (("lenet5", 12), ("allcnnc", 9)):
        ok = DatasetInfo("x", "classification", (1, side, side), 3)
        assert _forward(build_model(name, ok, seed=0), ok).shape == (2, 3)
        with pytest.raises(ModelShapeError):
            check_model_fits(name, DatasetInfo("x", "classification", (1, side - 1, side), 3))


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match="unknown model 'vgg'; known models: logistic, mlp, lenet5"):
        check_model_fits("vgg", DIGITS)


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_seeded_determinism(name):
    info = FITTING[name]
    a, b, c = (_params(build_model(name, info, seed=s)) for s in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    floats = [(x, y) for x, y in zip(a, c, strict=True) if x.is_floating_point() and x.numel() > 1]
    assert any(not torch.equal(x, y) for x, y in floats)


def test_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("resnet18", FITTING["resnet18"], seed=9)
    build_model("mlp", DIGITS, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_wideresnet_depth_and_width():
    model = WideResNet(in_channels=3, num_outputs=10, depth=10, widen_factor=2)
    assert model.head.in_features == 128  # 64 * widen_factor
    blocks = [m for m in model.modules() if type(m).__name__ == "_WideBlock"]
    assert len(blocks) == 3  # (10 - 4) / 6 blocks in each of 3 groups
    default = build_model("wideresnet", CIFAR, seed=0)
    assert default.head.in_features == 256  # registry default WRN-16-4: 2 blocks per group
    assert sum(type(m).__name__ == "_WideBlock" for m in default.modules()) == 6
    with pytest.raises(ValueError, match="6n\\+4"):
        WideResNet(3, 10, depth=15)


def test_resnet18_small_image_stem():
    model = build_model("resnet18", DatasetInfo("x", "classification", (1, 28, 28), 10), seed=0)
    assert model.conv1.in_channels == 1 and model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
