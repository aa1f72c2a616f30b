"""The torch-free configuration checks (`tasks.describe`) against the worker's own (`tasks.datasets`).

The web process validates a configuration with `describe.check_dataset` and `describe.check_model_fits`;
a worker later loads the data with `datasets`. Both must give the same verdict (the same DataError,
message and field) on the same data, or a configuration the page accepts fails in the worker.
"""

from __future__ import annotations

import itertools
import pickle
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from search_engine import catalog
from search_engine.tasks import datasets, dataspec, describe, networks, user_files
from search_engine.tasks.datasets import DataError, DatasetInfo, DatasetSpec, builtin, tabular, vision

from .fuzzing import fuzz
from .tasks.test_fuzz_tabular import KINDS, csv_soup, mangled, odd_archives, valid_csv, valid_npz
from .tasks.test_vision import WRITERS, _fake_image_set, _write_idx, _write_mnist


def verdict(check, spec: DatasetSpec, seed: int = 0):
    """("ok", info) or ("refused", message, field)."""
    try:
        return "ok", check(spec, seed)
    except DataError as exc:
        return "refused", str(exc), exc.field


def both(spec: DatasetSpec, seed: int = 0):
    """The torch-free and the worker's verdicts on `spec`."""
    return verdict(describe.check_dataset, spec, seed), verdict(datasets.check_dataset, spec, seed)


# ---------------------------------------------------------------- the catalogue's facts are the engine's


def test_builtin_facts_are_the_loaded_data():
    for name in catalog.BUILTIN_DATASETS:
        info = builtin.BUILTIN_INFO[name]
        facts = catalog.DATA_FACTS[name]
        assert (facts.input_shape, facts.n_outputs) == (info.input_shape, info.n_outputs)
        assert describe.describe_dataset(DatasetSpec(name)) == info
    counts = tuple(np.bincount(load_digits().target).tolist())
    assert catalog.DATA_FACTS["digits"].class_counts == catalog.DATA_FACTS["digits28"].class_counts == counts
    assert catalog.DATA_FACTS["digits"].n_samples == sum(counts) == 1797
    assert catalog.DATA_FACTS["diabetes"].n_samples == 442


def test_vision_facts_are_torchvision_layouts():
    for name, (info, files, _) in vision.VISION_SETS.items():
        facts = catalog.DATA_FACTS[name]
        assert (facts.input_shape, facts.n_outputs) == (info.input_shape, info.n_outputs)
        assert list(facts.files) == files()  # same files, in the order the worker checks them


def test_model_sides_and_file_limits_are_the_workers():
    assert catalog.MODEL_MIN_IMAGE_SIDE == networks._MIN_IMAGE_SIDE
    assert user_files.MAX_ABS_VALUE == tabular.MAX_ABS_VALUE and user_files.STD_FLOOR == datasets.core.STD_FLOOR
    assert (user_files.NPZ_FEATURES_KEY, user_files.NPZ_DEFAULT_LABEL_KEY, user_files.POLL_ROWS) == (
        tabular.NPZ_FEATURES_KEY, tabular.NPZ_DEFAULT_LABEL_KEY, tabular.POLL_ROWS)


def test_the_engine_uses_the_torch_free_types():
    assert datasets.DataError is dataspec.DataError is describe.DataError
    assert datasets.DatasetSpec is dataspec.DatasetSpec and datasets.DatasetInfo is dataspec.DatasetInfo


def test_checking_a_task_imports_no_numeric_stack():
    code = ("import sys; from search_engine.config import TaskConfig, check_task; "
            "assert check_task(TaskConfig()) == {}; assert check_task(TaskConfig(dataset='diabetes')) == {}; "
            "print(sorted(m for m in ('torch', 'torchvision', 'sympy', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- split verdicts

COUNTS = [(1,), (2,), (3,), (2, 2), (1, 9), (3, 3), (4, 4, 4), (3, 4, 5), (3, 30), (3, 3, 3, 9), (6, 6, 3),
          (10, 10), (20, 15, 6)]
FRACTIONS = [(0.2, 0.2), (0.1, 0.5), (0.2, 0.5), (0.05, 0.6), (0.3, 0.6), (0.05, 0.05), (0.6, 0.1), (0.02, 0.9)]


def _labelled_csv(tmp_path, counts) -> str:
    path = tmp_path / ("c" + "_".join(map(str, counts)) + ".csv")
    labels = [f"k{c}" for c, k in enumerate(counts) for _ in range(k)]
    path.write_text("a,label\n" + "".join(f"{i * 0.5},{lab}\n" for i, lab in enumerate(labels)))
    return str(path)


def test_split_verdicts_agree_near_every_limit(tmp_path):
    """Small class counts and fractions at each size limit, every seed: the same verdict, message and field.
    Some of these verdicts are made by sklearn's carve itself, and some depend on the seed."""
    made_by_sklearn, seed_dependent = 0, 0
    for counts, (val, test), max_train in itertools.product(COUNTS, FRACTIONS, (None, 3)):
        spec = DatasetSpec("csv", data_file=_labelled_csv(tmp_path, counts), kind="classification",
                           val_fraction=val, test_fraction=test, max_train=max_train)
        outcomes = set()
        for seed in range(8):
            ours, workers = both(spec, seed)
            assert ours == workers, (counts, val, test, seed)
            outcomes.add(ours[0])
            made_by_sklearn += ours[0] == "refused" and ours[1].startswith("cannot carve")
        seed_dependent += len(outcomes) == 2
    assert made_by_sklearn and seed_dependent  # the cases reach the carve the size checks cannot settle


def test_regression_split_verdicts_agree(tmp_path):
    for n, (val, test) in itertools.product(range(1, 12), FRACTIONS):
        path = tmp_path / f"r{n}.csv"
        path.write_text("a,t\n" + "".join(f"{i},{i * 1.5}\n" for i in range(n)))
        spec = DatasetSpec("csv", data_file=str(path), kind="regression", val_fraction=val, test_fraction=test)
        ours, workers = both(spec, seed=n)
        assert ours == workers, (n, val, test)


@pytest.mark.parametrize("name", catalog.BUILTIN_DATASETS)
def test_builtin_split_verdicts_agree(name):
    shares = (0.001, 0.003, 0.006, 0.2, 0.5, 0.9, 0.97, 0.993)
    for val, test in itertools.product(shares, shares):
        if val + test < 1:
            ours, workers = both(DatasetSpec(name, val_fraction=val, test_fraction=test), seed=1)
            assert ours == workers, (val, test)


def test_no_carve_is_made_where_the_size_checks_settle_the_verdict(monkeypatch):
    def no_carve(*args, **kwargs):
        raise AssertionError("a carve was made")

    monkeypatch.setattr(dataspec, "_carve", no_carve)
    for name in catalog.BUILTIN_DATASETS:
        describe.check_dataset(DatasetSpec(name), seed=0)
    describe.check_dataset(DatasetSpec("digits", val_fraction=0.02, test_fraction=0.97), seed=0)
    with pytest.raises(AssertionError, match="a carve was made"):  # (3, 30) at test_fraction 0.6 is open
        dataspec.check_split(np.repeat([0, 1], [3, 30]), True, False, DatasetSpec("csv", test_fraction=0.6), 0)


# ---------------------------------------------------------------- csv / npz files


@pytest.mark.parametrize(("text", "kind", "label"), [
    ("", "classification", None), ("a,b\n", "classification", None), ("a,b\n1,x\n2\n", "classification", None),
    ("a,b,y\n1,oops,0\n2,3,1\n", "classification", None), ("a,b\n1,0\n2,1\n", "classification", "class"),
    ("a,y\n1,0\nnan,1\n", "classification", None), ("a,y\n1,0\n1e300,1\n", "classification", None),
    ("a,y\n1,u\n2,u\n3,u\n4,v\n", "classification", None), ("a,y\n1,0\n2,1\n", None, None),
    ("a,y\n1,0\n2,1\n", "ranking", None), ("a,y\n1,high\n2,1\n", "regression", None), ("y\n1\n2\n", "classification", None),
    ("a,a,y\n1,2,3\n", "classification", None), ("a,y\n1,\n2,b\n3,b\n", "classification", None),
    ("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(12)), "classification", None),
    ("a,y\n" + "".join(f"{i},{i * 2.5}\n" for i in range(12)), "regression", "a"),
])
def test_csv_verdicts_agree(tmp_path, text, kind, label):
    path = tmp_path / "data.csv"
    path.write_text(text)
    ours, workers = both(DatasetSpec("csv", data_file=str(path), kind=kind, label=label))
    assert ours == workers


def test_missing_and_unreadable_files_agree(tmp_path):
    for name in ("csv", "npz"):
        for data_file in (None, str(tmp_path / f"absent.{name}"), "x" * 300):
            ours, workers = both(DatasetSpec(name, data_file=data_file, kind="classification"))
            assert ours == workers and ours[0] == "refused"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"a,y\n\xff\xfe,1\n")
    assert both(DatasetSpec("csv", data_file=str(latin), kind="regression"))[0][1].startswith("cannot read CSV file")


NPZ_CASES = [
    {"x": np.zeros((4, 2)), "target": np.zeros(4)},
    {"x": np.zeros((4, 2)), "y": np.zeros(5)},
    {"x": np.array([[np.nan, 1.0]] * 9), "y": np.arange(9) % 3},
    {"x": np.zeros(9), "y": np.zeros(9)},
    {"x": np.zeros((0, 2)), "y": np.zeros(0)},
    {"x": np.zeros((12, 2)), "y": np.zeros((12, 2))},
    {"x": np.array([["a"]] * 12), "y": np.arange(12) % 2},
    {"x": np.random.default_rng(1).normal(size=(50, 2, 3, 3)), "y": np.array(["b", "a"] * 25)},
    {"x": np.arange(60.0).reshape(30, 2), "y": np.stack([np.arange(30.0), -np.arange(30.0)], axis=1)},
]


@pytest.mark.parametrize("kind", catalog.KINDS)
@pytest.mark.parametrize("arrays", NPZ_CASES, ids=range(len(NPZ_CASES)))
def test_npz_verdicts_agree(tmp_path, arrays, kind):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    ours, workers = both(DatasetSpec("npz", data_file=str(path), kind=kind))
    assert ours == workers


def _agree_on(name: str, content: bytes, kind: str, seed: int = 0) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload.{name}"
        path.write_bytes(content)
        ours, workers = both(DatasetSpec(name, data_file=str(path), kind=kind), seed)
        assert ours == workers


@fuzz(150)
@given(csv_soup() | valid_csv(odd_cells=True), KINDS, st.integers(0, 3))
def test_any_csv_gets_the_workers_verdict(text, kind, seed):
    """The fuzz tests' CSV soup and odd cells: refused with the worker's message, or accepted as the worker does."""
    _agree_on("csv", text.encode("utf-8", "surrogatepass"), kind, seed)


@pytest.mark.filterwarnings("ignore:Duplicate name", "ignore:Reading `.npy` or `.npz` file required")
@fuzz(150)
@given(odd_archives() | valid_npz().flatmap(mangled) | valid_npz(), KINDS)
def test_any_npz_gets_the_workers_verdict(content, kind):
    """Archives with wrong, corrupt or huge-claiming members, and mangled valid ones."""
    _agree_on("npz", content, kind)


class Trap:
    """Unpickling it raises: a check that unpickles a file fails loudly."""

    def __reduce__(self):
        return _sprung, ()


def _sprung():
    raise AssertionError("a pickle was unpickled")


def test_pickled_npz_arrays_are_refused_unopened(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.array([Trap(), 1.0] * 4, dtype=object).reshape(-1, 1), y=np.arange(8) % 2)
    ours, workers = both(DatasetSpec("npz", data_file=str(path), kind="classification"))
    assert ours == workers and ours[0] == "refused" and "pickle" in ours[1].lower()


# ---------------------------------------------------------------- torchvision folders


@pytest.mark.parametrize("name", catalog.VISION_DATASETS)
def test_real_vision_files_pass_and_a_missing_one_is_named(tmp_path, name):
    shape = catalog.DATA_FACTS[name].input_shape
    WRITERS[name](tmp_path, *_fake_image_set(shape, range(10)))
    spec = DatasetSpec(name, data_root=str(tmp_path), val_fraction=0.3)
    ours, workers = both(spec)
    assert ours == workers == ("ok", vision.VISION_SETS[name][0])
    (tmp_path / catalog.DATA_FACTS[name].files[-1]).unlink()
    ours, workers = both(spec)
    assert ours == workers and "expected file not found" in ours[1]


def test_vision_roots_agree(tmp_path):
    for data_root in (None, str(tmp_path / "nowhere"), str(tmp_path / ("x" * 300))):
        for name in catalog.VISION_DATASETS:
            ours, workers = both(DatasetSpec(name, data_root=data_root))
            assert ours == workers and ours[0] == "refused"
    assert both(DatasetSpec("mnist", data_root=str(tmp_path), val_fraction=1.5))[0][1].startswith("val_fraction")


def test_cifar_batches_are_not_unpickled(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for rel in catalog.DATA_FACTS["cifar10"].files:
        (tmp_path / rel).write_bytes(pickle.dumps(Trap()))
    assert describe.check_dataset(DatasetSpec("cifar10", data_root=str(tmp_path)), 0).input_shape == (3, 32, 32)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_an_empty_vision_file_is_refused_as_the_worker_refuses_it_at_load(tmp_path, name):
    WRITERS[name](tmp_path, *_fake_image_set(catalog.DATA_FACTS[name].input_shape, range(10)))
    empty = tmp_path / catalog.DATA_FACTS[name].files[0]
    empty.write_bytes(b"")
    spec = DatasetSpec(name, data_root=str(tmp_path))
    assert verdict(describe.check_dataset, spec) == ("refused", f"dataset {name!r}: file is empty: {empty}", None)
    with pytest.raises(DataError, match="cannot parse"):
        datasets.load_dataset(spec, seed=0)


def _broken_mnist(root, how: str) -> None:
    """Real MNIST files, then one part broken the way `how` says."""
    train, test = _fake_image_set((1, 28, 28), range(10))
    _write_mnist(root, "MNIST", train, test)
    raw = root / "MNIST" / "raw"
    if how == "wrong magic":
        data = (raw / "train-images-idx3-ubyte").read_bytes()
        (raw / "train-images-idx3-ubyte").write_bytes(struct.pack(">I", 0x0D03) + data[4:])  # float32 type code
    elif how == "truncated":
        data = (raw / "t10k-images-idx3-ubyte").read_bytes()
        (raw / "t10k-images-idx3-ubyte").write_bytes(data[:-5])
    elif how == "too short":
        (raw / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")
    elif how == "empty":
        (raw / "train-labels-idx1-ubyte").write_bytes(b"")
    elif how == "small images":
        _write_idx(raw / "train-images-idx3-ubyte", train[0][:, 0, :27, :27])
    elif how == "flat images":
        _write_idx(raw / "train-images-idx3-ubyte", train[0].reshape(len(train[0]), -1))
    elif how == "fewer labels":
        _write_idx(raw / "t10k-labels-idx1-ubyte", test[1][:-1])


@pytest.mark.parametrize(("how", "words"), [
    ("wrong magic", "train split under {root}: {root}/MNIST/raw/train-images-idx3-ubyte is not an idx file"),
    ("truncated", "test split under {root}: {root}/MNIST/raw/t10k-images-idx3-ubyte announces 20x28x28 bytes"),
    ("too short", "train-labels-idx1-ubyte is not an idx file of 1-dimensional unsigned bytes"),
    ("empty", "file is empty: {root}/MNIST/raw/train-labels-idx1-ubyte"),
    ("small images", "train split under {root}: images have shape (1, 27, 27), expected (1, 28, 28)"),
    ("flat images", "train-images-idx3-ubyte is not an idx file of 3-dimensional unsigned bytes"),
    ("fewer labels", "test split under {root}: 20 images but 19 labels"),
])
def test_broken_idx_files_are_refused_at_validation_as_the_worker_refuses_them_at_load(tmp_path, how, words):
    """The worker's check only sees that the files exist; its load would fail. The torch-free check reads
    the idx headers, so it refuses at submit what the worker would refuse later."""
    _broken_mnist(tmp_path, how)
    spec = DatasetSpec("mnist", data_root=str(tmp_path))
    refused = verdict(describe.check_dataset, spec)
    assert refused[0] == "refused" and refused[2] is None
    assert words.format(root=tmp_path) in refused[1]
    assert verdict(datasets.check_dataset, spec)[0] == "ok"
    with pytest.raises(DataError):
        datasets.load_dataset(spec, seed=0)


# ---------------------------------------------------------------- model fit

SHAPES = [(64,), (10,), (1, 8, 8), (1, 11, 11), (1, 12, 12), (3, 9, 9), (3, 8, 8), (3, 7, 32), (1, 4, 4), (2, 3, 3),
          (3, 32, 32), (0, 16, 16), (2, 2, 2, 2), (5, 12)]


def test_model_fit_verdicts_agree():
    for model, shape in itertools.product((*catalog.MODEL_NAMES, "transformer"), SHAPES):
        info = DatasetInfo("d", "classification", shape, 3)
        found = []
        for check in (describe.check_model_fits, networks.check_model_fits):
            try:
                check(model, info)
                found.append(None)
            except ValueError as exc:
                found.append(str(exc))
        assert found[0] == found[1], (model, shape)
