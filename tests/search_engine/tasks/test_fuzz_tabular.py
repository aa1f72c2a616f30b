"""Property-based tests of the CSV and NPZ loaders (`describe_dataset` / `load_dataset`).

Property: whatever a user uploads (random bytes, random text, CSV-looking token soup, valid files
truncated or with bytes flipped, zip archives with wrong, corrupt or oddly compressed members,
headers that claim enormous arrays, pickled object arrays) either loads into finite float32 data
or is refused with a DataError; describe_dataset's DataError names the file. Pickles are never
unpickled. Files go to a fresh temporary directory per example (function-scoped fixtures such as
tmp_path are shared by all of a property's examples). Settings: `tests/search_engine/fuzzing.py`.
"""

from __future__ import annotations

import io
import math
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from search_engine.tasks.datasets import DataError, DatasetSpec, describe_dataset, load_dataset
from tests.search_engine.fuzzing import fuzz

KINDS = st.sampled_from(("classification", "regression"))


def _check_file(name: str, content: bytes, kind: str, label: str | None = None) -> None:
    """Write `content` to a fresh file and check the property on describe_dataset and load_dataset."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload.{name}"
        path.write_bytes(content)
        spec = DatasetSpec(name, data_file=str(path), kind=kind, label=label)
        try:
            info = describe_dataset(spec)
        except DataError as exc:
            assert str(path) in str(exc), f"the message must name the file: {exc}"
            event(f"{name}: refused by describe")
            return
        assert info.n_outputs >= 1 and math.prod(info.input_shape) >= 1, info
        try:
            splits = load_dataset(spec, seed=0)
        except DataError as exc:  # the split checks name the fraction or class at fault
            assert str(exc)
            event(f"{name}: refused by load")
            return
        event(f"{name}: loaded")
        for part in ("train", "val", "test"):
            x = getattr(splits, f"x_{part}")
            assert x.dtype == torch.float32 and bool(torch.isfinite(x).all()), f"non-finite x_{part}"
            y = getattr(splits, f"y_{part}")
            assert y.dtype == torch.int64 or bool(torch.isfinite(y).all()), f"non-finite y_{part}"


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npz(arrays: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _zip(members: list[tuple[str, bytes]], method: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _header_claiming(shape: tuple[int, ...], descr: str) -> bytes:
    """An .npy header announcing `shape`, followed by a few bytes of data only."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\x00" * 16


@st.composite
def mangled(draw, content: bytes) -> bytes:
    """`content` truncated, with bytes flipped, overwritten or inserted (1 to 3 edits)."""
    data = bytearray(content)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        edit = draw(st.sampled_from(("truncate", "flip", "zero", "insert")))
        if edit == "truncate":
            del data[i:]
        elif edit == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif edit == "zero":
            data[i:i + draw(st.integers(1, 16))] = b"\x00" * 4
        else:
            data[i:i] = draw(st.sampled_from((b"\x00", b'"', b",", b"\n", b"\r", b"\xff", b"nan", b"1e300", b"PK")))
    return bytes(data)


# ---------------------------------------------------------------- CSV

CELLS = st.sampled_from(
    ("", " ", "0", "1", "2", "-1.5", "1e300", "-1e300", "3.5e38", "1e999", "nan", "inf", "-inf", "NaN", "1_0",
     "0x10", "\u0661", "a", "cat", '"q"', '"a,b"', '"', "1,2", "\x00", "\u00e9")
) | st.from_regex(r"-?\d{1,3}(\.\d{1,2})?", fullmatch=True) | st.text(max_size=4)
#: Numbers at the edges of float32 (the models' dtype): 1e300 is a finite float64 but inf as float32,
#: 3.4e38 a finite float32 whose standardized value is not; the loaders' bound is +-1.7e32.
NUMERIC_EDGES = st.sampled_from(("1e300", "-1e300", "3.5e38", "-3.4e38", "1.7e32", "-1.8e32", "1e-320", "-0"))
HEADER_NAMES = st.sampled_from(("a", "b", "y", "label", "", " a", "a ")) | st.text(max_size=3)


@st.composite
def csv_soup(draw) -> str:
    """Rows of CSV-looking cells: ragged, quoted, blank, non-numeric, huge and non-finite values."""
    width = draw(st.integers(1, 4))
    header = draw(st.lists(HEADER_NAMES, min_size=width, max_size=width))
    rows = draw(st.lists(st.lists(CELLS, min_size=max(width - 1, 0), max_size=width + 1), max_size=12))
    newline = draw(st.sampled_from(("\n", "\r\n", "\r")))
    return newline.join(",".join(row) for row in [header, *rows]) + draw(st.sampled_from(("", newline)))


@st.composite
def valid_csv(draw, odd_cells: bool = False) -> str:
    """A well-formed CSV with 1-3 numeric features and a label column (text or numbers); with
    `odd_cells`, one to three cells are replaced by odd ones (huge, non-finite, text, blank)."""
    n, width = draw(st.integers(8, 30)), draw(st.integers(1, 3))
    labels = draw(st.sampled_from((["a", "b"], ["0", "1", "2"], ["1.5", "-2", "7"])))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    rows = [[*(f"{v:.4g}" for v in rng.normal(size=width)), labels[i % len(labels)]] for i in range(n)]
    for _ in range(draw(st.integers(1, 3)) if odd_cells else 0):
        rows[draw(st.integers(0, n - 1))][draw(st.integers(0, width))] = draw(NUMERIC_EDGES | CELLS)
    rows = [",".join(row) for row in rows]
    return "\n".join([",".join([*(f"f{j}" for j in range(width)), "label"]), *rows]) + "\n"


@fuzz(150)
@given(st.binary(max_size=200), KINDS)
def test_csv_random_bytes(content, kind):
    """Random bytes (mostly invalid UTF-8) as a CSV file."""
    _check_file("csv", content, kind)


@fuzz(150)
@given(st.text(max_size=120), KINDS, st.none() | st.sampled_from(("a", "y", "")))
def test_csv_random_text(text, kind, label):
    """Random Unicode text, UTF-8 encoded, as a CSV file (with and without a label column name)."""
    _check_file("csv", text.encode("utf-8", "surrogatepass"), kind, label)


@fuzz(300)
@given(csv_soup(), KINDS, st.none() | st.sampled_from(("a", "y", "label")))
def test_csv_token_soup(text, kind, label):
    """CSV-looking text: the parser's own vocabulary of delimiters, quotes and values."""
    _check_file("csv", text.encode("utf-8", "surrogatepass"), kind, label)


@fuzz(150)
@given(valid_csv().flatmap(lambda text: mangled(text.encode())), KINDS)
def test_csv_mangled_valid_file(content, kind):
    """A valid CSV truncated or with bytes flipped, zeroed or inserted."""
    _check_file("csv", content, kind)


@fuzz(150)
@given(valid_csv(odd_cells=True), KINDS)
def test_csv_valid_layout_with_odd_cells(text, kind):
    """A well-formed CSV with some cells huge (1e300 overflows float32), non-finite, text or blank."""
    _check_file("csv", text.encode("utf-8", "surrogatepass"), kind)


# ---------------------------------------------------------------- NPZ

DTYPES = st.sampled_from(("<f8", "<f4", "<f2", "<i8", "|i1", "<u8", "|b1")) | st.sampled_from(
    ("<c16", "<U3", "|S2", "<M8[D]", "|V4", ">f8")
)


@st.composite
def arrays(draw) -> np.ndarray:
    """Small arrays of many dtypes and shapes (including empty and 0-d)."""
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    dtype = np.dtype(draw(DTYPES))
    raw = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 3, size=shape)
    if dtype.kind == "f" and draw(st.booleans()):
        with np.errstate(over="ignore"):  # 1e300 as float16 is inf: fine, also a value to refuse
            return np.full(shape, draw(st.sampled_from((np.nan, np.inf, 1e300, -1e39))), dtype=dtype)
    if dtype.kind == "V":
        return np.zeros(shape, dtype=dtype)
    return raw.astype(dtype)


@st.composite
def valid_npz(draw) -> bytes:
    """A well-formed archive: x (N, k) float features and y labels or targets, stored or deflated."""
    n, k = draw(st.integers(6, 20)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return _npz({"x": rng.normal(size=(n, k)), "y": np.arange(n) % 2}, compressed=draw(st.booleans()))


MEMBER_NAMES = st.sampled_from(("x.npy", "y.npy", "x", "y", "labels.npy", "dir/x.npy", "x.npy.npy", "x/")) | st.text(
    min_size=1, max_size=5
).filter(lambda name: name.split("\x00")[0].lstrip("/"))  # zipfile cannot write an empty member name
METHODS = st.sampled_from((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA))


@st.composite
def member_contents(draw) -> bytes:
    """One archive member: a real .npy, a header claiming a (possibly huge) array, or junk."""
    choice = draw(st.sampled_from(("npy", "npy", "claim", "junk", "mangled")))
    if choice == "npy":
        return _npy(draw(arrays()))
    if choice == "claim":
        shape = tuple(draw(st.lists(st.integers(0, 10**7) | st.integers(0, 4), min_size=1, max_size=3)))
        return _header_claiming(shape, draw(DTYPES))
    if choice == "junk":
        return draw(st.binary(max_size=64))
    return draw(mangled(_npy(draw(arrays()))))


@st.composite
def odd_archives(draw) -> bytes:
    """Zip archives with wrong, missing, duplicated or corrupt members, in every zip compression."""
    members = draw(st.lists(st.tuples(MEMBER_NAMES, member_contents()), max_size=4))
    if draw(st.booleans()):  # often hold the right names, so the loader gets past "missing array"
        members += [("x.npy", draw(member_contents())), ("y.npy", draw(member_contents()))]
    return _zip(members, draw(METHODS))


@fuzz(100)
@given(st.binary(max_size=200), KINDS)
def test_npz_random_bytes(content, kind):
    """Random bytes (sometimes with a zip signature in front) as an NPZ file."""
    _check_file("npz", content, kind)
    _check_file("npz", b"PK\x03\x04" + content, kind)


@fuzz(200)
@given(valid_npz().flatmap(mangled), KINDS)
def test_npz_mangled_valid_file(content, kind):
    """A valid NPZ (stored or deflated) truncated or with bytes flipped, zeroed or inserted."""
    _check_file("npz", content, kind)


def _member_data_spans(content: bytes) -> list[tuple[int, int]]:
    """(start, end) byte offsets of each member's (possibly compressed) data inside a zip archive."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        infos = archive.infolist()
    # A local file header is 30 bytes, then the name and the extra field (lengths at offsets 26, 28).
    starts = [i.header_offset + 30 + sum(struct.unpack_from("<HH", content, i.header_offset + 26)) for i in infos]
    return [(start, start + i.compress_size) for start, i in zip(starts, infos, strict=True)]


@fuzz(100)
@given(valid_npz(), st.data(), KINDS)
def test_npz_corrupt_member_data(content, data, kind):
    """A valid NPZ with bytes flipped inside a member's (deflated or stored) data stream, where
    the zip directory stays intact and only the decompressor or the CRC check can notice."""
    start, end = data.draw(st.sampled_from(_member_data_spans(content)))
    corrupt = bytearray(content)
    for _ in range(data.draw(st.integers(1, 3))):
        corrupt[data.draw(st.integers(start, end - 1))] ^= data.draw(st.integers(1, 255))
    _check_file("npz", bytes(corrupt), kind)


@pytest.mark.filterwarnings("ignore:Duplicate name", "ignore:Reading `.npy` or `.npz` file required")
@fuzz(250)
@given(odd_archives(), KINDS, st.none() | st.sampled_from(("labels", "x")))
def test_npz_archives_with_wrong_members(content, kind, label):
    """Zip archives whose members have wrong names, dtypes, shapes, headers or compression."""
    _check_file("npz", content, kind, label)


SAMPLE_COUNTS = st.integers(8, 12) | st.integers(0, 12)
FEATURE_SHAPES = st.sampled_from(((1,), (3,), (2, 2))) | st.lists(st.integers(0, 3), max_size=2).map(tuple)
LABEL_SHAPES = st.sampled_from(((), (), (1,), (2,))) | st.lists(st.integers(0, 2), max_size=1).map(tuple)


@fuzz(100)
@given(SAMPLE_COUNTS, FEATURE_SHAPES, LABEL_SHAPES, arrays(), arrays(), KINDS)
def test_npz_arrays_of_any_dtype_and_shape(n, x_tail, y_tail, x_values, y_values, kind):
    """Well-formed archives whose x (n, *x_tail) and y (n, *y_tail) have any dtype (text, complex,
    dates, void, huge or non-finite floats), including no samples and no features."""
    x = np.resize(x_values, (n, *x_tail)) if x_values.size else np.zeros((n, *x_tail), x_values.dtype)
    y = np.resize(y_values, (n, *y_tail)) if y_values.size else np.zeros((n, *y_tail), y_values.dtype)
    _check_file("npz", _npz({"x": x, "y": y}), kind)


# ---------------------------------------------------------------- pickles are never unpickled

UNPICKLED: list[str] = []


def _record_unpickling(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Trap:
    """An object whose unpickling is recorded: loading an object array would call _record_unpickling."""

    def __reduce__(self):
        return _record_unpickling, ("trap",)


@fuzz(30)
@given(st.sampled_from(("x", "y", "both")), KINDS, st.booleans())
def test_pickled_object_arrays_are_refused_unopened(which, kind, compressed):
    """Object arrays (which np.save pickles) are refused with a DataError and never unpickled."""
    trap = np.array([Trap(), 1.0, 2.0, Trap()] * 2, dtype=object)
    x = trap.reshape(-1, 1) if which in ("x", "both") else np.zeros((8, 1))
    y = trap if which in ("y", "both") else np.arange(8) % 2
    before = len(UNPICKLED)
    message = _refusal("npz", _npz({"x": x, "y": y}, compressed), kind)
    assert "pickle" in message.lower() or "object" in message.lower()
    assert len(UNPICKLED) == before, "an object array was unpickled"


def test_the_pickle_trap_springs_when_unpickled():
    """The trap above is live: np.load with allow_pickle=True does record it (so the property is not vacuous)."""
    before = len(UNPICKLED)
    np.load(io.BytesIO(_npy(np.array([Trap()], dtype=object))), allow_pickle=True)
    assert len(UNPICKLED) == before + 1


def _refusal(name: str, content: bytes, kind: str = "classification") -> str:
    """The DataError message describe_dataset gives for `content`; it must name the file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload.{name}"
        path.write_bytes(content)
        with pytest.raises(DataError) as info:
            describe_dataset(DatasetSpec(name, data_file=str(path), kind=kind))
        assert str(path) in str(info.value)
        return str(info.value)


# ---------------------------------------------------------------- regressions found by the properties


def test_corrupt_deflate_stream_is_a_data_error():
    """Found by fuzzing: a flipped byte inside a deflated member raised zlib.error."""
    content = bytearray(_npz({"x": np.zeros((20, 2)), "y": np.arange(20) % 2}, compressed=True))
    start, end = _member_data_spans(bytes(content))[0]
    content[start:end] = bytes([0xFF]) * (end - start)  # not a valid deflate block
    assert "cannot read" in _refusal("npz", bytes(content))


def test_garbled_npy_header_is_a_data_error():
    """Found by fuzzing: an .npy header that is not a Python literal raised tokenize.TokenError."""
    text = b"{'descr': '<f8', 'fortran_order': False,{'shape': (), }"
    header = b"\x93NUMPY\x01\x00" + (len(text) + 1).to_bytes(2, "little") + text + b"\n"
    content = _zip([("x.npy", header + b"\x00" * 8), ("y.npy", _npy(np.zeros(1)))], zipfile.ZIP_STORED)
    assert "cannot read npz file" in _refusal("npz", content)


def test_header_claiming_a_huge_array_is_refused_before_allocating():
    """Found by fuzzing: a 200-byte file whose header claims (10**6, 10**6) float64 made np.load
    try to allocate 7.3 TiB (MemoryError)."""
    content = _zip([("x.npy", _header_claiming((10**6, 10**6), "<f8")), ("y.npy", _header_claiming((10**6,), "<f8"))],
                   zipfile.ZIP_STORED)
    assert "claims shape (1000000, 1000000)" in _refusal("npz", content)


@pytest.mark.parametrize("kind", ["classification", "regression"])
@pytest.mark.parametrize("x, y, words", [
    (np.zeros((0, 2)), np.zeros(0), "at least one sample"),
    (np.zeros((4, 0)), np.arange(4) % 2, "one value per sample"),
])
def test_npz_without_samples_or_features_is_a_data_error(kind, x, y, words):
    """Found by fuzzing: no samples raised ValueError (regression) or a DataError that did not name the
    file (classification); no features per sample was accepted as input_shape (0,)."""
    assert words in _refusal("npz", _npz({"x": x, "y": y}), kind)


def test_npz_regression_without_target_columns_is_a_data_error():
    """Found by fuzzing: y of shape (N, 0) gave "n_outputs must be >= 1" without naming the file."""
    assert "k >= 1" in _refusal("npz", _npz({"x": np.zeros((4, 2)), "y": np.zeros((4, 0))}), "regression")


@pytest.mark.parametrize("name, content, kind", [
    ("csv", b"f0,label\n1e300,a\n-0.1,b\n0.6,a\n0.1,b\n-0.5,a\n0.3,b\n", "classification"),
    ("csv", b"f0,label\n3.4e38,a\n-0.1,b\n0.6,a\n0.1,b\n-0.5,a\n0.3,b\n", "classification"),
    ("csv", b"f0,f1,label\n0.1,0,0\n0.6,0.1,1\n-0.5,0.3,3.4e38\n1.3,0.9,0\n-0.7,-1.2,1\n", "regression"),
    ("csv", b"f0,target\n1,1e300\n2,3\n3,4\n4,5\n5,6\n", "regression"),
    ("npz", _npz({"x": np.full((6, 1), 1e300), "y": np.arange(6) % 2}), "classification"),
    ("npz", _npz({"x": np.zeros((6, 1)), "y": np.full(6, -1e39)}), "regression"),
])
def test_values_beyond_float32_are_a_data_error(name, content, kind):
    """Found by fuzzing: 1e300 is a finite float64, so it passed the finiteness check and became inf
    once cast to the models' float32; 3.4e38 is a finite float32, but standardized (divided by the
    training std) it overflowed to inf in the test split."""
    message = _refusal(name, content, kind)
    assert "NaN or infinite" in message or "finite numbers" in message
    assert "1.7e+32" in message
