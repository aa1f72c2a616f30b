"""torchvision datasets read from tiny files written in their real on-disk formats (nothing is downloaded)."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import scipy.io
import torch
from torchvision.datasets import CIFAR10

from search_engine.tasks.datasets import DataError, DatasetSpec, describe_dataset, load_dataset

from .splits import recover

# ---------------------------------------------------------------- torchvision sets, real on-disk formats

N_TRAIN, N_TEST = 60, 20


def _write_idx(path, arr: np.ndarray) -> None:
    """MNIST idx file: big-endian magic (0x08 = uint8, then ndim), dims, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(struct.pack(">I", 0x0800 | arr.ndim) + dims + arr.astype(np.uint8).tobytes())


def _write_mnist(root, folder: str, train, test) -> None:
    for prefix, (x, y) in (("train", train), ("t10k", test)):
        _write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", x[:, 0])
        _write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", y)


def _pickle(path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def _write_cifar10(root, train, test) -> None:
    """Five pickled training batches, a test batch and batches.meta; rows are CHW-flattened uint8."""
    folder, (x, y), (xt, yt) = root / "cifar-10-batches-py", train, test
    for b, part in enumerate(np.array_split(np.arange(len(y)), 5), start=1):
        batch = {"data": x[part].reshape(len(part), -1), "labels": y[part].tolist()}
        _pickle(folder / f"data_batch_{b}", batch)
    _pickle(folder / "test_batch", {"data": xt.reshape(len(yt), -1), "labels": yt.tolist()})
    _pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})


def _write_cifar100(root, train, test) -> None:
    folder = root / "cifar-100-python"
    for name, (x, y) in (("train", train), ("test", test)):
        rows = {"data": x.reshape(len(y), -1), "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()}
        _pickle(folder / name, rows)
    _pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                              "coarse_label_names": [f"g{i}" for i in range(20)]})


def _write_svhn(root, train, test) -> None:
    """Real layout: X is (H, W, C, N) uint8, y is (N, 1) with digit 0 stored as label 10."""
    root.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in (("train", train), ("test", test)):
        svhn_y = np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(root / f"{name}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": svhn_y})


WRITERS = {
    "mnist": lambda root, tr, te: _write_mnist(root, "MNIST", tr, te),
    "fashion_mnist": lambda root, tr, te: _write_mnist(root, "FashionMNIST", tr, te),
    "cifar10": _write_cifar10,
    "cifar100": _write_cifar100,
    "svhn": _write_svhn,
}


def _fake_image_set(shape, classes, seed: int = 0):
    """Random uint8 NCHW images with balanced labels for train and test."""
    rng = np.random.default_rng(seed)
    labels = np.resize(np.asarray(classes, dtype=np.int64), N_TRAIN + N_TEST)
    images = rng.integers(0, 256, size=(N_TRAIN + N_TEST, *shape), dtype=np.uint8)
    return (images[:N_TRAIN], labels[:N_TRAIN]), (images[N_TRAIN:], labels[N_TRAIN:][::-1].copy())


@pytest.mark.parametrize(
    "name, shape, classes",
    [("mnist", (1, 28, 28), range(10)), ("fashion_mnist", (1, 28, 28), range(10)),
     ("cifar10", (3, 32, 32), range(10)), ("cifar100", (3, 32, 32), [0, 17, 42, 63, 99]),
     ("svhn", (3, 32, 32), range(10))],
)
def test_torchvision_real_formats_round_trip(tmp_path, name, shape, classes):
    train, test = _fake_image_set(shape, classes)
    WRITERS[name](tmp_path, train, test)
    spec = DatasetSpec(name, data_root=str(tmp_path), test_fraction=0.9)  # ignored: official test split
    s = load_dataset(spec, seed=0)
    assert s.info == describe_dataset(spec) and s.info.input_shape == shape
    pool = np.concatenate([s.idx_train.numpy(), s.idx_val.numpy()])
    assert np.array_equal(np.sort(pool), np.arange(N_TRAIN)) and len(s.x_val) == N_TRAIN // 5
    assert np.array_equal(s.idx_test.numpy(), np.arange(N_TEST))
    scaled = torch.from_numpy(train[0]).float() / 255
    assert torch.allclose(s.x_mean.flatten(), scaled[s.idx_train].mean(dim=(0, 2, 3)), atol=1e-6)
    for part, (x, y) in (("train", train), ("val", train), ("test", test)):
        ix = getattr(s, f"idx_{part}").numpy()
        assert torch.allclose(recover(s, part), torch.from_numpy(x[ix]).float() / 255, atol=1e-5)
        assert getattr(s, f"y_{part}").tolist() == y[ix].tolist()  # SVHN: stored 10 comes back as 0


def test_torchvision_md5_check_is_replaced_by_existence_check(tmp_path):
    """Our files are valid CIFAR batches but not the official ones: stock torchvision refuses them."""
    _write_cifar10(tmp_path, *_fake_image_set((3, 32, 32), range(10)))
    with pytest.raises(RuntimeError, match="corrupted"):
        CIFAR10(str(tmp_path), train=True, download=False)
    assert len(load_dataset(DatasetSpec("cifar10", data_root=str(tmp_path)), seed=0).x_test) == N_TEST
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot parse cifar10 test split"):
        load_dataset(DatasetSpec("cifar10", data_root=str(tmp_path)), seed=0)


def test_torchvision_missing_root_and_files(tmp_path):
    with pytest.raises(DataError, match="'mnist' needs data_root"):
        describe_dataset(DatasetSpec("mnist"))
    with pytest.raises(DataError, match="data root for 'cifar10' not found: .*nowhere"):
        describe_dataset(DatasetSpec("cifar10", data_root=str(tmp_path / "nowhere")))
    _write_mnist(tmp_path, "MNIST", *_fake_image_set((1, 28, 28), range(10)))
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="expected file not found: .*MNIST/raw/t10k-labels-idx1-ubyte"):
        load_dataset(DatasetSpec("mnist", data_root=str(tmp_path)), seed=0)
    with pytest.raises(DataError, match="expected file not found: .*train_32x32.mat"):
        describe_dataset(DatasetSpec("svhn", data_root=str(tmp_path)))
