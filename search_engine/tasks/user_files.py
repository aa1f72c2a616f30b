"""A user's CSV and NPZ data read with numpy alone, with the checks and messages of the worker's loaders.

`read_csv` and `read_npz` parse and check a file exactly as `datasets.tabular` does (every feature value,
the labels, the arrays' headers before loading them, pickles refused), and give numpy arrays instead of
tensors, so a configuration naming such a file is checked in full in a process that never imports torch.
Tests check that both give the same verdicts on the same files.
"""

from __future__ import annotations

import csv
import lzma
import math
import pickle
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search_engine.catalog import KINDS
from search_engine.runtime import interrupt
from search_engine.tasks.dataspec import DataError, DatasetInfo, DatasetSpec

NPZ_FEATURES_KEY = "x"
NPZ_DEFAULT_LABEL_KEY = "y"
#: CSV rows read between two questions to a search's should_stop (about 10 ms of parsing)
POLL_ROWS = 5000
#: Standard deviations below this are treated as constant by the scaling (datasets.core.STD_FLOOR).
STD_FLOOR = 1e-6
# What reading a damaged archive raises besides BadZipFile/ValueError/EOFError: a corrupt deflate or
# lzma stream its codec's error, an unknown compression method NotImplementedError, an encrypted
# member RuntimeError, a garbled .npy header a tokenizer or syntax error.
_NPZ_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
                    NotImplementedError, RuntimeError, tokenize.TokenError, SyntaxError, pickle.UnpicklingError)


@dataclass(frozen=True)
class UserData:
    """A checked user file: float32 features (N, *input_shape), labels or targets, class names."""

    info: DatasetInfo
    x: np.ndarray
    y: np.ndarray  # int64 class ids (N,) or float32 targets (N, k)
    class_names: tuple[str, ...] | None


def _data_file(spec: DatasetSpec) -> Path:
    """The spec's data file, checked to exist, with a valid `kind`."""
    if not spec.data_file:
        raise DataError(f"dataset {spec.name!r} needs data_file (the path of the {spec.name} file)")
    if spec.kind not in KINDS:
        chosen = "nothing" if spec.kind is None else repr(spec.kind)
        raise DataError(f"an uploaded {spec.name} file needs its kind: choose {' or '.join(KINDS)} (got {chosen})",
                        field="kind")
    path = Path(spec.data_file)
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. ENAMETOOLONG, which Path.is_file does not swallow
        raise DataError(f"data file not found: {path} ({exc.strerror or exc})") from exc
    if not found:
        raise DataError(f"data file not found: {path}")
    return path


def encode_classes(values: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map labels to 0..C-1 in sorted order (numeric order if every label is a number)."""
    if values.ndim != 1:
        raise DataError(f"{where}: classification labels must be one-dimensional, got shape {values.shape}")
    keys = values
    if values.dtype.kind in "UO":
        try:  # "10" must sort after "9", so numeric-looking labels are ordered as numbers
            keys = values.astype(np.float64)
        except ValueError:
            keys = values.astype(str)
    if keys.dtype.kind == "f" and not np.isfinite(keys).all():
        raise DataError(f"{where}: labels contain NaN or infinite values")
    classes, codes = np.unique(keys, return_inverse=True)
    names = tuple(f"{c:g}" if isinstance(c, float) else str(c) for c in classes)
    return codes.astype(np.int64).reshape(-1), names


#: Largest magnitude a feature or target may have: standardizing in float32 (the models' dtype) divides
#: a difference of up to 2 * MAX_ABS_VALUE by a std of at least STD_FLOOR, which must stay finite.
MAX_ABS_VALUE = float(np.finfo(np.float32).max) * STD_FLOOR / 2  # about 1.7e32
_BEYOND = f"(or beyond +-{MAX_ABS_VALUE:.2g}, where scaling would overflow float32)"


def _finite_and_bounded(values: np.ndarray) -> bool:
    """Whether every value is finite and within +-MAX_ABS_VALUE."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool((np.abs(values.astype(np.float64)) <= MAX_ABS_VALUE).all())  # NaN compares False


def _numeric(values: list[str], column: str, path: Path) -> np.ndarray:
    """Parse one CSV column as float64, naming the column and first bad value on failure."""
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_float(v))
        raise DataError(f"CSV file {path}: column {column!r} is not numeric (value {bad!r})") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and data rows of a CSV file, with the row shape checked."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows = []
            for row in reader:
                if reader.line_num % POLL_ROWS == 0:
                    interrupt.poll()  # a large file takes a while: a stop request must not wait for it
                cells = [cell.strip() for cell in row]
                if any(cells):
                    rows.append((reader.line_num, cells))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV file {path}: {exc}") from exc
    if not rows:
        raise DataError(f"CSV file {path} is empty; expected a header row and data rows")
    header = rows[0][1]
    if len(set(header)) != len(header):
        raise DataError(f"CSV file {path}: duplicate column names in header {header}")
    if len(rows) < 2:
        raise DataError(f"CSV file {path} has a header but no data rows")
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"CSV file {path}, line {line}: {len(row)} fields but the header has {len(header)}")
    return header, [row for _, row in rows[1:]]


def _csv_labels(spec: DatasetSpec, path: Path, values: list[str], label: str):
    """Encoded labels (classification) or float targets (regression) of a CSV label column."""
    where = f"CSV file {path}, label column {label!r}"
    if spec.kind == "classification":
        if any(v == "" for v in values):
            raise DataError(f"{where}: has empty values")
        return encode_classes(np.array(values, dtype=object), where)
    y = _numeric(values, label, path)
    if not _finite_and_bounded(y):
        raise DataError(f"{where}: contains NaN or infinite values {_BEYOND}")
    return y.astype(np.float32).reshape(-1, 1), None


def read_csv(spec: DatasetSpec) -> UserData:
    """Parse and check a CSV dataset: a header row, numeric feature columns, one label column."""
    path = _data_file(spec)
    header, rows = _read_csv(path)
    label = spec.label if spec.label is not None else header[-1]
    if label not in header:
        raise DataError(f"CSV file {path}: label column {label!r} not found; available columns: {header}")
    if len(header) < 2:
        raise DataError(f"CSV file {path}: needs at least one feature column besides label {label!r}")
    columns = list(zip(*rows, strict=True))  # rows already checked to match the header
    features = []
    for j, name in enumerate(header):
        if name == label:
            continue
        interrupt.poll()
        col = _numeric(list(columns[j]), name, path)
        if not _finite_and_bounded(col):
            raise DataError(f"CSV file {path}: feature column {name!r} contains NaN or infinite values {_BEYOND}")
        features.append(col)
    y, names = _csv_labels(spec, path, list(columns[header.index(label)]), label)
    n_outputs = len(names) if names is not None else 1
    info = DatasetInfo(spec.name, spec.kind, (len(features),), n_outputs)
    return UserData(info, np.stack(features, axis=1).astype(np.float32), y, names)


def _npz_header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Array shapes in an .npz archive, read from the .npy headers without loading the data."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                shapes[member.removesuffix(".npy")] = _npy_member_shape(archive, member)
    except _NPZ_READ_ERRORS as exc:
        raise DataError(f"cannot read npz file {path}: {exc}") from exc
    return shapes


def _npy_member_shape(archive: zipfile.ZipFile, member: str) -> tuple[int, ...]:
    """Shape from one member's .npy header; ValueError if the header claims more data than the member
    holds (np.load would first allocate the claimed size: a tiny file could ask for terabytes)."""
    # Format 3.0 differs from 2.0 only in the header's text encoding (utf8, for field names).
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0,
               (3, 0): np.lib.format.read_array_header_2_0}
    with archive.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        if version not in readers:
            raise ValueError(f"member {member!r}: unsupported .npy format version {version}")
        shape, _, dtype = readers[version](fh)
        held = archive.getinfo(member).file_size - fh.tell()
    claimed = math.prod(shape) * dtype.itemsize
    if not dtype.hasobject and claimed > held:  # object arrays are pickles, refused when loaded
        raise ValueError(f"member {member!r} claims shape {shape} of {dtype} ({claimed} bytes) but holds {held}")
    return tuple(shape)


def _npz_keys(spec: DatasetSpec, path: Path, shapes: dict[str, tuple[int, ...]]) -> tuple[str, str]:
    """Features/label keys, checked present with compatible shapes."""
    label = spec.label or NPZ_DEFAULT_LABEL_KEY
    for key in (NPZ_FEATURES_KEY, label):
        if key not in shapes:
            raise DataError(f"npz file {path}: missing array {key!r}; available arrays: {sorted(shapes)}")
    xs, ys = shapes[NPZ_FEATURES_KEY], shapes[label]
    if len(xs) < 2:
        raise DataError(f"npz file {path}: features {NPZ_FEATURES_KEY!r} must be (N, ...) with N samples, got {xs}")
    if math.prod(xs) == 0:
        raise DataError(f"npz file {path}: features {NPZ_FEATURES_KEY!r} have shape {xs}; "
                        "need at least one sample and one value per sample")
    if len(ys) == 0 or ys[0] != xs[0]:
        raise DataError(
            f"npz file {path}: {NPZ_FEATURES_KEY!r} has shape {xs} but {label!r} has shape {ys}; lengths must match"
        )
    if len(ys) > 2 or (spec.kind == "classification" and len(ys) != 1) or 0 in ys[1:]:
        raise DataError(
            f"npz file {path}: labels {label!r} must be (N,) (or (N, k) with k >= 1 for regression), got {ys}"
        )
    return NPZ_FEATURES_KEY, label


def _npz_array(path: Path, key: str) -> np.ndarray:
    """One array from an .npz archive (pickled object arrays are refused)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return archive[key]
    except _NPZ_READ_ERRORS as exc:
        raise DataError(f"cannot read array {key!r} from npz file {path}: {exc}") from exc


def read_npz(spec: DatasetSpec) -> UserData:
    """Load and check an NPZ dataset: features "x" (N, ...) and labels or targets (default key "y")."""
    path = _data_file(spec)
    x_key, y_key = _npz_keys(spec, path, _npz_header_shapes(path))
    x, y = _npz_array(path, x_key), _npz_array(path, y_key)
    if x.dtype.kind not in "biuf":
        raise DataError(f"npz file {path}: features {x_key!r} must be numeric, got dtype {x.dtype}")
    if not _finite_and_bounded(x):
        raise DataError(f"npz file {path}: features {x_key!r} contain NaN or infinite values {_BEYOND}")
    names = None
    if spec.kind == "classification":
        y, names = encode_classes(y, f"npz file {path}, labels {y_key!r}")
    else:
        if y.dtype.kind not in "biuf" or not _finite_and_bounded(y):
            raise DataError(f"npz file {path}: regression targets {y_key!r} must be finite numbers {_BEYOND}")
        y = y.astype(np.float32).reshape(len(y), -1)
    n_outputs = len(names) if names is not None else y.shape[1]
    info = DatasetInfo(spec.name, spec.kind, x.shape[1:], n_outputs)
    return UserData(info, x.astype(np.float32), y, names)
