"""Image datasets read from disk with the real torchvision dataset classes (never downloaded).

Expected layout under `data_root` (torchvision's own):
  mnist          MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
  fashion_mnist  FashionMNIST/raw/... (same names)
  cifar10        cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
  cifar100       cifar-100-python/{train, test, meta}
  svhn           {train_32x32.mat, test_32x32.mat}
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100, MNIST, SVHN, FashionMNIST

from search_engine.tasks.datasets.core import DataError, DatasetInfo, DatasetSpec, Source
from search_engine.tasks.dataspec import vision_files


class _ExistenceCheck:
    """Mixin: accept CIFAR batch files that exist instead of demanding the official md5 sums.

    Why: torchvision's CIFAR classes verify every file against the checksum of the official
    archive, so any other file in the same format (our tests' tiny fixtures, a re-packed or
    subsetted copy) is rejected as "corrupted". Only that check is replaced; parsing is still
    done by torchvision's own code, i.e. the real pickled batch format.
    """

    def _check_integrity(self) -> bool:
        folder = os.path.join(self.root, self.base_folder)
        return all(os.path.isfile(os.path.join(folder, name)) for name, _ in self.train_list + self.test_list)


class LocalCIFAR10(_ExistenceCheck, CIFAR10):
    """CIFAR-10 from disk with an existence check in place of md5 verification."""

    meta = {**CIFAR10.meta, "md5": None}  # md5=None makes torchvision's check an existence check


class LocalCIFAR100(_ExistenceCheck, CIFAR100):
    """CIFAR-100 from disk with an existence check in place of md5 verification."""

    meta = {**CIFAR100.meta, "md5": None}


class LocalSVHN(SVHN):
    """SVHN from disk; the .mat file must exist, its md5 is not checked (see `_ExistenceCheck`)."""

    def _check_integrity(self) -> bool:
        return os.path.isfile(os.path.join(self.root, self.filename))


def _mnist_files(cls: type[MNIST]) -> list[str]:
    """Raw idx files torchvision's MNIST-style class reads, relative to the root."""
    names = [os.path.splitext(name)[0] for name, _ in cls.resources]  # archives are stored unpacked
    return [os.path.join(cls.__name__, "raw", name) for name in names]


def _cifar_files(cls: type[CIFAR10]) -> list[str]:
    """Pickled batch files (and the metadata file) of a CIFAR class, relative to the root."""
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [os.path.join(cls.base_folder, name) for name in names]


def _svhn_files() -> list[str]:
    """SVHN's train and test .mat files, relative to the root."""
    return [SVHN.split_list[split][1] for split in ("train", "test")]


def _mnist_arrays(cls: type[MNIST], root: str, train: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Images (N, 1, 28, 28) uint8 and labels from an MNIST-style class."""
    ds = cls(root, train=train, download=False)
    return ds.data.unsqueeze(1), ds.targets.numpy().astype(np.int64)


def _cifar_arrays(cls: type[CIFAR10], root: str, train: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels from a CIFAR class (stored HWC)."""
    ds = cls(root, train=train, download=False)
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2), np.asarray(ds.targets, dtype=np.int64)


def _svhn_arrays(root: str, train: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (digit 0 is label 0) from SVHN."""
    ds = LocalSVHN(root, split="train" if train else "test", download=False)
    return torch.from_numpy(np.ascontiguousarray(ds.data)), ds.labels.astype(np.int64).reshape(-1)


# name -> (info, expected files relative to data_root, reader(root, train) -> (uint8 images, labels))
VISION_SETS = {
    "mnist": (DatasetInfo("mnist", "classification", (1, 28, 28), 10), lambda: _mnist_files(MNIST),
              lambda root, train: _mnist_arrays(MNIST, root, train)),
    "fashion_mnist": (DatasetInfo("fashion_mnist", "classification", (1, 28, 28), 10),
                      lambda: _mnist_files(FashionMNIST),
                      lambda root, train: _mnist_arrays(FashionMNIST, root, train)),
    "cifar10": (DatasetInfo("cifar10", "classification", (3, 32, 32), 10), lambda: _cifar_files(CIFAR10),
                lambda root, train: _cifar_arrays(LocalCIFAR10, root, train)),
    "cifar100": (DatasetInfo("cifar100", "classification", (3, 32, 32), 100), lambda: _cifar_files(CIFAR100),
                 lambda root, train: _cifar_arrays(LocalCIFAR100, root, train)),
    "svhn": (DatasetInfo("svhn", "classification", (3, 32, 32), 10), _svhn_files, _svhn_arrays),
}


def describe_vision(spec: DatasetSpec) -> DatasetInfo:
    """Info of a torchvision set after checking that its root and every expected file exist."""
    info, files, _ = VISION_SETS[spec.name]
    vision_files(spec.name, spec.data_root, files())
    return info


def _to_float_images(images: torch.Tensor, labels: np.ndarray, info: DatasetInfo, what: str):
    """uint8 images -> float32 in [0, 1], after checking shape and label range."""
    if tuple(images.shape[1:]) != info.input_shape:
        raise DataError(f"{what}: images have shape {tuple(images.shape[1:])}, expected {info.input_shape}")
    if len(labels) != len(images):
        raise DataError(f"{what}: {len(images)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= info.n_outputs):
        raise DataError(
            f"{what}: labels must lie in 0..{info.n_outputs - 1}, got {labels.min()}..{labels.max()}"
        )
    # CIFAR arrives as an NHWC view; contiguous NCHW keeps later indexing and convolutions fast.
    return images.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0), labels


def load_vision_source(spec: DatasetSpec) -> Source:
    """Official train split as the pool and official test split as the test set, scaled to [0, 1]."""
    info = describe_vision(spec)
    _, _, reader = VISION_SETS[spec.name]
    parts = []
    for train in (True, False):
        what = f"{spec.name} {'train' if train else 'test'} split under {spec.data_root}"
        try:
            images, labels = reader(spec.data_root, train)
        except Exception as exc:  # any failure to parse the user's files is a data error
            raise DataError(f"cannot parse {what}: {exc}") from exc
        parts.append(_to_float_images(images, labels, info, what))
    (x, y), (x_test, y_test) = parts
    return Source(info=info, x=x, y=y, image=True, x_test=x_test, y_test=y_test)
