"""Tests for search_engine.tasks.datasets: real sklearn data, user files, and torchvision on-disk formats."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_diabetes, load_digits

from search_engine.tasks.datasets import DATASET_NAMES, DataError, DatasetSpec, describe_dataset, load_dataset

from .splits import load, recover

PARTS = ("train", "val", "test")


# ---------------------------------------------------------------- built-in datasets


@pytest.mark.parametrize(
    "name, kind, shape, n_out, n_total",
    [("digits", "classification", (1, 8, 8), 10, 1797), ("digits28", "classification", (1, 28, 28), 10, 1797),
     ("diabetes", "regression", (10,), 1, 442)],
)
def test_builtin_shapes_dtypes_kind(name, kind, shape, n_out, n_total):
    info = describe_dataset(DatasetSpec(name))
    assert (info.kind, info.input_shape, info.n_outputs) == (kind, shape, n_out)
    s = load(name)
    assert s.info == info
    assert sum(len(getattr(s, f"x_{p}")) for p in PARTS) == n_total
    for p in PARTS:
        x, y = getattr(s, f"x_{p}"), getattr(s, f"y_{p}")
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == shape and len(y) == len(x)
        if kind == "classification":
            assert y.dtype == torch.int64 and y.dim() == 1 and 0 <= y.min() and y.max() < n_out
        else:
            assert y.dtype == torch.float32 and tuple(y.shape) == (len(x), 1)
    assert len(s.x_test) == pytest.approx(0.2 * n_total, abs=1)
    assert len(s.x_val) == pytest.approx(0.2 * n_total, abs=1)


def _row_hashes(rows: np.ndarray) -> list[str]:
    return [hashlib.sha1(r.tobytes()).hexdigest() for r in rows]


def test_digits_splits_partition_the_dataset():
    """Indices are disjoint and complete, the recovered pixels prove the indices tell the truth, and
    the split contents are exactly the dataset's images as a multiset.

    sklearn's digits has no two identical images (checked below), so the content hashes of the three
    splits must also be pairwise disjoint; the multiset form stays valid for data with duplicates.
    """
    images = load_digits().images.astype(np.int64)
    s = load("digits", seed=3)
    idx = [getattr(s, f"idx_{p}").numpy() for p in PARTS]
    assert sum(map(len, idx)) == len(images)
    assert np.array_equal(np.sort(np.concatenate(idx)), np.arange(len(images)))  # disjoint + complete
    split_rows = []
    for p, ix in zip(PARTS, idx, strict=True):
        pixels = torch.round(recover(s, p) * 16).to(torch.int64).squeeze(1).numpy()
        assert np.array_equal(pixels, images[ix])
        split_rows.append(_row_hashes(pixels))
    assert Counter(sum(split_rows, [])) == Counter(_row_hashes(images))
    assert len(set(_row_hashes(images))) == len(images)  # precondition for the content check below
    train, val, test = map(set, split_rows)
    assert not (train & val) and not (train & test) and not (val & test)


def test_stratified_class_proportions():
    s = load("digits", seed=1)
    labels = load_digits().target
    share = np.bincount(labels) / len(labels)
    for p in PARTS:
        y = getattr(s, f"y_{p}").numpy()
        assert np.all(np.abs(np.bincount(y, minlength=10) - share * len(y)) <= 2)


def test_seeded_determinism():
    a, b, c = load("digits", seed=7), load("digits", seed=7), load("digits", seed=8)
    for p in PARTS:
        assert torch.equal(getattr(a, f"x_{p}"), getattr(b, f"x_{p}"))
        assert torch.equal(getattr(a, f"y_{p}"), getattr(b, f"y_{p}"))
    assert not torch.equal(a.idx_train, c.idx_train)


def test_digits_standardized_with_training_statistics_only():
    images = torch.from_numpy(load_digits().images.astype(np.float32) / 16).unsqueeze(1)
    s = load("digits", seed=2)
    train = images[s.idx_train]
    assert torch.allclose(s.x_mean.flatten(), train.mean().reshape(1), atol=1e-6)
    assert torch.allclose(s.x_std.flatten(), train.std(correction=0).reshape(1), atol=1e-6)
    assert not torch.allclose(s.x_mean.flatten(), images.mean().reshape(1), atol=1e-6)
    assert abs(float(s.x_train.mean())) < 1e-5 and abs(float(s.x_train.std(correction=0)) - 1) < 1e-4
    expected_val = (images[s.idx_val] - train.mean()) / train.std(correction=0)
    assert torch.allclose(s.x_val, expected_val, atol=1e-5)


def test_diabetes_per_feature_and_target_standardization():
    raw = load_diabetes(scaled=False)
    s = load("diabetes", seed=4)
    x_tr = torch.tensor(raw.data[s.idx_train.numpy()], dtype=torch.float32)
    y_tr = torch.tensor(raw.target[s.idx_train.numpy()], dtype=torch.float32)
    assert torch.allclose(s.x_train.mean(0), torch.zeros(10), atol=1e-4)
    assert torch.allclose(s.x_train.std(0, correction=0), torch.ones(10), atol=1e-4)
    x_te = torch.tensor(raw.data[s.idx_test.numpy()], dtype=torch.float32)
    assert torch.allclose(s.x_test, (x_te - x_tr.mean(0)) / x_tr.std(0, correction=0), atol=1e-4)
    assert torch.allclose(s.y_mean, y_tr.mean().reshape(1)) and abs(float(s.y_train.mean())) < 1e-5
    y_te = torch.tensor(raw.target[s.idx_test.numpy()], dtype=torch.float32)
    assert torch.allclose(s.y_test.squeeze(1) * s.y_std + s.y_mean, y_te, atol=1e-3)


def test_digits28_is_upsampled_real_digits():
    images = torch.from_numpy(load_digits().images.astype(np.float32) / 16).unsqueeze(1)
    s = load("digits28", seed=0)
    expected = F.interpolate(images[s.idx_test], size=(28, 28), mode="bilinear", align_corners=False)
    assert torch.allclose(recover(s, "test"), expected, atol=1e-5)


def test_max_train_subsamples_training_split_only():
    full, small = load("digits", seed=5), load("digits", seed=5, max_train=200)
    assert len(small.x_train) == 200
    assert set(small.idx_train.tolist()) <= set(full.idx_train.tolist())
    assert torch.equal(small.idx_val, full.idx_val) and torch.equal(small.idx_test, full.idx_test)
    counts = np.bincount(small.y_train.numpy(), minlength=10)
    assert counts.min() >= 18 and counts.max() <= 22  # stratified: ~20 of each digit


def test_splits_to_moves_data_but_keeps_indices():
    s = load("diabetes").to("meta")
    assert s.x_train.device.type == "meta" and s.y_std.device.type == "meta"
    assert s.idx_train.device.type == "cpu"


@pytest.mark.parametrize(
    "spec, message",
    [(DatasetSpec("nope"), "known datasets: digits, digits28"),
     (DatasetSpec("digits", val_fraction=0.0), "val_fraction"),
     (DatasetSpec("digits", val_fraction=0.5, test_fraction=0.5), "below 1")],
)
def test_bad_specs(spec, message):
    with pytest.raises(DataError, match=message):
        load_dataset(spec, seed=0)
    assert "svhn" in DATASET_NAMES


# ---------------------------------------------------------------- csv / npz


def _csv(tmp_path, text: str, **kw) -> DatasetSpec:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return DatasetSpec("csv", data_file=str(path), **kw)


def _table(n: int = 40, labels=("cat", "dog", "ant", "bee")) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)) * [1, 10, 100], [labels[i % len(labels)] for i in range(n)]


def _line(*cells) -> str:
    return ",".join(str(c) for c in cells)  # str(float) is its shortest round-tripping repr


def test_csv_classification_round_trip(tmp_path):
    x, y = _table()
    lines = ["a,b,c,animal"] + [_line(*r, lab) for r, lab in zip(x.tolist(), y, strict=True)]
    spec = _csv(tmp_path, "\n".join(lines) + "\n", kind="classification")
    info = describe_dataset(spec)
    assert (info.kind, info.input_shape, info.n_outputs) == ("classification", (3,), 4)
    s = load_dataset(spec, seed=0)
    codes = {"ant": 0, "bee": 1, "cat": 2, "dog": 3}  # sorted order
    for p in PARTS:
        ix = getattr(s, f"idx_{p}").numpy()
        assert torch.allclose(recover(s, p).double(), torch.from_numpy(x[ix]), rtol=1e-5, atol=1e-4)
        assert getattr(s, f"y_{p}").tolist() == [codes[y[i]] for i in ix]


def test_csv_numeric_labels_sorted_numerically_and_label_option(tmp_path):
    rows = [f"{lab},{i}.5" for i, lab in enumerate([10, 9, 2] * 5)]
    s = load_dataset(_csv(tmp_path, "target,f\n" + "\n".join(rows), label="target", kind="classification"), 0)
    assert s.info.input_shape == (1,) and s.info.n_outputs == 3
    feature = torch.round(recover(s, "train").squeeze(1) - 0.5).long()  # row i has feature i.5
    assert s.y_train.tolist() == [{2: 0, 9: 1, 10: 2}[[10, 9, 2][int(i) % 3]] for i in feature]


def test_csv_regression_round_trip(tmp_path):
    x, _ = _table(30)
    target = x @ [1.0, 2.0, 3.0]
    lines = ["a,b,c,t"] + [_line(*r, t) for r, t in zip(x.tolist(), target.tolist(), strict=True)]
    s = load_dataset(_csv(tmp_path, "\n".join(lines), kind="regression"), seed=1)
    assert s.y_train.shape == (len(s.x_train), 1) and abs(float(s.y_train.mean())) < 1e-5
    recovered = s.y_test.squeeze(1).double() * s.y_std.double() + s.y_mean.double()
    assert torch.allclose(recovered, torch.from_numpy(target[s.idx_test.numpy()]), rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize(
    "text, kw, message",
    [("", {}, "is empty"),
     ("a,b\n", {}, "no data rows"),
     ("a,b\n1,x\n2\n", {}, r"line 3: 1 fields but the header has 2"),
     ("a,b,y\n1,oops,0\n2,3,1\n", {}, r"column 'b' is not numeric \(value 'oops'\)"),
     ("a,b\n1,0\n2,1\n", {"label": "class"},
      r"label column 'class' not found; available columns: \['a', 'b'\]"),
     ("a,y\n1,0\nnan,1\n", {}, "feature column 'a' contains NaN"),
     ("a,y\n1,0\ninf,1\n", {}, "feature column 'a' contains NaN or infinite"),
     ("a,y\n" + "1,u\n2,u\n3,u\n4,v\n", {}, "too few samples per class.*class 'v' has 1 sample"),
     ("a,y\n1,0\n2,1\n", {"kind": None}, "needs its kind: choose classification or regression \\(got nothing\\)"),
     ("a,y\n1,0\n2,1\n", {"kind": "ranking"}, "needs its kind.*got 'ranking'"),
     ("a,y\n1,high\n2,1\n", {"kind": "regression"}, "column 'y' is not numeric"),
     ("y\n1\n2\n", {}, "at least one feature column")],
)
def test_csv_bad_inputs(tmp_path, text, kw, message):
    spec = _csv(tmp_path, text, **{"kind": "classification", **kw})
    with pytest.raises(DataError, match=message):
        load_dataset(spec, seed=0)


def test_csv_missing_and_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="data file not found: .*absent.csv"):
        describe_dataset(DatasetSpec("csv", data_file=str(tmp_path / "absent.csv"), kind="regression"))
    bad = tmp_path / "latin.csv"
    bad.write_bytes(b"a,y\n\xff\xfe,1\n")
    with pytest.raises(DataError, match="cannot read CSV file"):
        load_dataset(DatasetSpec("csv", data_file=str(bad), kind="regression"), seed=0)


def _npz(tmp_path, kind="classification", label=None, **arrays) -> DatasetSpec:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return DatasetSpec("npz", data_file=str(path), kind=kind, label=label)


def test_npz_round_trip_with_image_shaped_features(tmp_path):
    x = np.random.default_rng(1).normal(size=(50, 2, 3, 3)).astype(np.float32)
    y = np.array(["b", "a"] * 25)
    spec = _npz(tmp_path, x=x, labels=y, label="labels")
    info = describe_dataset(spec)
    assert (info.input_shape, info.n_outputs) == ((2, 3, 3), 2)
    s = load_dataset(spec, seed=0)
    for p in PARTS:
        ix = getattr(s, f"idx_{p}").numpy()
        assert torch.allclose(recover(s, p), torch.from_numpy(x[ix]), atol=1e-5)
        assert getattr(s, f"y_{p}").tolist() == [int(v == "b") for v in y[ix]]


def test_npz_regression_multi_target(tmp_path):
    x = np.arange(60, dtype=np.float64).reshape(30, 2)
    spec = _npz(tmp_path, kind="regression", x=x, y=np.stack([x[:, 0], -x[:, 1]], axis=1))
    assert describe_dataset(spec).n_outputs == 2
    assert load_dataset(spec, seed=0).y_val.shape[1] == 2


@pytest.mark.parametrize(
    "arrays, message",
    [({"x": np.zeros((4, 2)), "target": np.zeros(4)},
      r"missing array 'y'; available arrays: \['target', 'x'\]"),
     ({"x": np.zeros((4, 2)), "y": np.zeros(5)}, "lengths must match"),
     ({"x": np.array([[np.nan, 1.0]] * 9), "y": np.arange(9) % 3}, "contain NaN or infinite"),
     ({"x": np.zeros(9), "y": np.zeros(9)}, r"must be \(N, ...\)")],
)
def test_npz_bad_inputs(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        load_dataset(_npz(tmp_path, **arrays), seed=0)


def test_npz_unreadable_and_kind_missing(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match="cannot read npz file"):
        describe_dataset(DatasetSpec("npz", data_file=str(junk), kind="classification"))
    with pytest.raises(DataError, match="needs its kind") as caught:
        describe_dataset(_npz(tmp_path, kind=None, x=np.zeros((4, 2)), y=np.zeros(4)))
    assert caught.value.field == "kind"  # reported at the kind field, not at the file


def test_describe_reports_bad_csv_and_npz_features_before_any_training(tmp_path):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("a,b,label\n1,2,0\n3,oops,1\n5,6,0\n7,8,1\n")
    with pytest.raises(DataError, match="'b'"):
        describe_dataset(DatasetSpec(name="csv", data_file=str(csv_path), kind="classification"))
    npz_path = tmp_path / "bad.npz"
    np.savez(npz_path, x=np.array([[1.0, np.nan], [2.0, 3.0]]), y=np.array([0, 1]))
    with pytest.raises(DataError, match="NaN"):
        describe_dataset(DatasetSpec(name="npz", data_file=str(npz_path), kind="classification"))
