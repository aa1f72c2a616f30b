"""Property-based tests of the configuration loader, `load_config`.

Properties: any JSON-like value (None, booleans, huge integers, NaN/infinite/huge floats, strings,
lists, objects keyed by real or random names) either loads or is refused with a ConfigError whose
`errors` maps str field names to non-empty str messages; never another exception. What loads
round-trips through `to_dict` / `to_json`, and its device string is one torch can use.
Settings: `tests/search_engine/fuzzing.py`.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from search_engine import catalog
from search_engine.config import ConfigError, ExperimentConfig, load_config
from tests.search_engine.fuzzing import fuzz

# ---------------------------------------------------------------- the real names

HINTS = typing.get_type_hints(ExperimentConfig)
SECTIONS = {f.name: HINTS[f.name] for f in dataclasses.fields(ExperimentConfig) if dataclasses.is_dataclass(HINTS[f.name])}
FIELDS = {name: [f.name for f in dataclasses.fields(cls)] for name, cls in SECTIONS.items()}
TOP_LEVEL = [f.name for f in dataclasses.fields(ExperimentConfig) if f.name not in SECTIONS]
ALL_NAMES = sorted({*SECTIONS, *TOP_LEVEL, *(n for names in FIELDS.values() for n in names)})

# ---------------------------------------------------------------- strategies

HUGE_INTS = st.sampled_from((10**19, 2**63, -(2**63) - 1, 10**400, -(10**400), 2**1024))
NUMBERS = (
    st.integers()
    | st.integers(-3, 300)
    | HUGE_INTS
    | st.floats()  # includes nan, +-inf and the extremes of float64
    | st.sampled_from((0.0, -0.0, 1.0, 0.5, 1e-320, 1e308, 1.7976931348623157e308, float("nan")))
)
WORDS = st.sampled_from(
    ("", "auto", "cpu", "cuda", "cuda:0", "cuda:1", "cuda:", "cuda:-1", "cuda:007", "cuda:128", "cuda:²",
     "cuda:\u0663", "cuda:1 ", "off", "all", "top_k", "batched", "sequential", "classification", "regression",
     *catalog.DATASET_NAMES, *catalog.MODEL_NAMES, *ALL_NAMES)
)
SCALARS = st.none() | st.booleans() | NUMBERS | WORDS | st.text(max_size=12)
KEYS = st.sampled_from(ALL_NAMES) | st.text(max_size=10)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)


@st.composite
def section_dicts(draw, section: str) -> dict:
    """A section object using mostly its own field names, with random values and the odd stray key."""
    names = FIELDS[section]
    keys = draw(st.lists(st.sampled_from(names) | KEYS, max_size=len(names) + 1, unique=True))
    return {k: draw(SCALARS if draw(st.integers(0, 9)) else JSON_VALUES) for k in keys}


@st.composite
def config_dicts(draw) -> dict:
    """Objects shaped like a configuration: real sections (or junk in their place) and top-level fields."""
    data: dict = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), unique=True)):
        data[section] = draw(section_dicts(section) if draw(st.integers(0, 9)) else JSON_VALUES)
    for name in draw(st.lists(st.sampled_from(TOP_LEVEL) | KEYS, max_size=3, unique=True)):
        data[name] = draw(SCALARS)
    return data


CHOICES = {"mode": ("off", "all", "top_k"), "strategy": ("auto", "sequential", "batched"), "kind": catalog.KINDS,
           "dataset": catalog.DATASET_NAMES, "model": catalog.MODEL_NAMES}
DEVICES = st.sampled_from(("auto", "cpu", "cuda", "cuda:0", "cuda:12", "cuda:127")) | st.sampled_from(
    ("cuda:128", "cuda:007", "cuda:²", "cuda:\u0663", "cuda:99999999999999999999", "cuda:", "cuda:-1", "CPU")
)


def _good_value(name: str, tp) -> st.SearchStrategy:
    """An in-range value for a field of annotation `tp` (Optional fields may also be None)."""
    if typing.get_origin(tp) is not None or isinstance(tp, type(int | None)):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return st.none() | _good_value(name, inner)
    if tp is str:
        return st.sampled_from(CHOICES[name]) if name in CHOICES else st.text(max_size=8)
    return {int: st.integers(2, 12), float: st.floats(0.01, 0.45), bool: st.booleans()}[tp]


EDGY = st.integers(-2, 40) | HUGE_INTS | st.floats(-0.5, 1.5) | WORDS | st.sampled_from(
    (-1, 0, 41, 10**400, -(10**400), 2**1024, 1e300, -0.5, 1.5, float("nan"), float("inf"), "", None)
)


@st.composite
def plausible_dicts(draw) -> dict:
    """Well-typed in-range values with an occasional edgy one (out of range, huge, wrong type): many
    of these load, so the round trip of accepted configurations is exercised too."""
    data: dict = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        fields = draw(st.lists(st.sampled_from(FIELDS[section]), unique=True, max_size=4))
        # heights must nest (init_min <= init_max <= max): fuzzed only as edgy values
        fields = [f for f in fields if "height" not in f or draw(st.integers(0, 3)) == 0]
        data[section] = {f: draw(EDGY if draw(st.integers(0, 9)) == 0 else _good_value(f, hints[f]))
                         for f in fields}
    if draw(st.booleans()):
        data["device"] = draw(DEVICES)
    if draw(st.booleans()):
        data["seed"] = draw(st.integers(0, 10**6) | st.integers(0, 10**6) | st.integers() | HUGE_INTS)
    return data


def _loads_or_config_error(data, **kwargs) -> ExperimentConfig | None:
    """load_config(data): the config, or None when refused with a well-formed ConfigError."""
    try:
        config = load_config(data, **kwargs)
    except ConfigError as exc:
        assert exc.errors, "a ConfigError must name at least one field"
        for field, message in exc.errors.items():
            assert isinstance(field, str) and field
            assert isinstance(message, str) and message
        assert str(exc)
        event("refused")
        return None
    assert isinstance(config, ExperimentConfig)
    event("loaded")
    return config


def _check_loaded(config: ExperimentConfig) -> None:
    """A loaded config reloads to itself (dict and JSON text) and names a device torch accepts."""
    assert load_config(config.to_dict(), check_data=False) == config
    assert load_config(config.to_json(), check_data=False) == config
    if config.device != "auto":
        device = torch.device(config.device)
        index = config.device.partition(":")[2]
        assert device.index == (int(index) if index else None)


# ---------------------------------------------------------------- properties (no data checks)


@fuzz(300)
@given(JSON_VALUES)
def test_any_json_value_loads_or_is_a_config_error(value):
    """Arbitrary JSON values (not only objects) as the whole configuration."""
    config = _loads_or_config_error(value, check_data=False)
    if config is not None:
        _check_loaded(config)


@fuzz(200)
@given(config_dicts())
def test_config_shaped_objects_load_or_are_a_config_error(data):
    """Objects with real section and field names and random values."""
    config = _loads_or_config_error(data, check_data=False)
    if config is not None:
        _check_loaded(config)


@fuzz(250)
@given(plausible_dicts())
def test_well_typed_objects_load_or_are_a_config_error(data):
    """Well-typed values around the bounds: each is accepted (and reloads) or refused cleanly."""
    config = _loads_or_config_error(data, check_data=False)
    if config is not None:
        _check_loaded(config)


@fuzz(150)
@given(st.text(max_size=40) | st.builds(lambda v: "{" + v, st.text(max_size=30)))
def test_any_text_loads_or_is_a_config_error(text):
    """Strings are JSON text (when they start with '{') or paths; either way only ConfigError."""
    _loads_or_config_error(text, check_data=False)


# ---------------------------------------------------------------- properties with data checks


@st.composite
def task_dicts(draw) -> dict:
    """A task section over the catalogue's datasets and models with random file/root/kind values."""
    paths = st.sampled_from(("a" * 300, "a\x00b", "\ud800", "", ".", "/", "/nonexistent/x.csv")) | st.none()
    task = {
        "dataset": draw(st.sampled_from(catalog.FILE_DATASETS) | st.sampled_from((*catalog.DATASET_NAMES, "imagenet", ""))),
        "model": draw(st.sampled_from((*catalog.MODEL_NAMES, "gpt"))),
        "data_file": draw(paths | st.text(max_size=12)),
        "data_root": draw(paths),
        "kind": draw(st.sampled_from(catalog.KINDS) | st.none() | st.sampled_from((*catalog.KINDS, "ranking"))),
        "label": draw(st.none() | st.text(max_size=5)),
        "max_train": draw(st.none() | st.integers(-1, 50) | HUGE_INTS),
    }
    return {k: v for k, v in task.items() if draw(st.integers(0, 4))}


@fuzz(80)
@given(task_dicts())
def test_task_checks_load_or_are_a_config_error(task):
    """With check_data=True (datasets described, models fitted) still only ConfigError."""
    _loads_or_config_error({"task": task})


ODD_PATHS = ("a" * 300, "a/" * 3000, "a\x00b", "\ud800", "", ".", "/", "/nonexistent/x.csv", "~", "..")


@fuzz(60)
@given(st.sampled_from(catalog.FILE_DATASETS), st.sampled_from(ODD_PATHS), st.sampled_from(catalog.KINDS))
def test_odd_data_file_paths_are_config_errors(dataset, path, kind):
    """Every dataset file path shape (too long, NUL, lone surrogate, a folder, missing) is a ConfigError
    on task.data_file. (The small space is enumerated: each combination runs.)"""
    with pytest.raises(ConfigError) as info:
        load_config({"task": {"dataset": dataset, "model": "mlp", "kind": kind, "data_file": path}})
    assert "task.data_file" in info.value.errors


# ---------------------------------------------------------------- regressions found by the properties


@pytest.mark.parametrize("value", [10**400, -(10**400), 2**1024])
def test_huge_integer_for_a_float_field_is_a_config_error(value):
    """Found by fuzzing: math.isfinite(10**400) raised OverflowError instead of a ConfigError."""
    with pytest.raises(ConfigError) as info:
        load_config({"training": {"lr": value}}, check_data=False)
    assert "finite number" in info.value.errors["training.lr"]


@pytest.mark.parametrize("value", [[], [1, 2], 3, 1.5, None, True])
def test_non_object_configuration_is_a_config_error(value):
    """Found by fuzzing: a list or number as the whole configuration raised TypeError (json.loads)."""
    with pytest.raises(ConfigError) as info:
        load_config(value, check_data=False)
    assert "object" in info.value.errors["config"]


def test_path_with_a_null_byte_is_a_config_error():
    """Found by fuzzing: reading the path 'a\\x00b' raised ValueError (embedded null byte)."""
    with pytest.raises(ConfigError) as info:
        load_config("a\x00b")
    assert "cannot read" in info.value.errors["config"]


def test_file_that_is_not_text_is_a_config_error(tmp_path):
    """A file of undecodable bytes raised UnicodeDecodeError instead of a ConfigError."""
    path = tmp_path / "config.json"
    path.write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "cannot read" in info.value.errors["config"]


def test_deeply_nested_json_text_is_a_config_error():
    """JSON nested far beyond any configuration raised RecursionError from json.loads."""
    text = '{"task": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ConfigError) as info:
        load_config(text)
    assert "nested too deeply" in info.value.errors["config"]


@pytest.mark.parametrize("device", ["cuda:²", "cuda:\u0663", "cuda:007", "cuda:128", "cuda:99999999999999999999"])
def test_device_index_torch_cannot_use_is_a_config_error(device):
    """Found by fuzzing: these passed validation, then torch.device() failed (or wrapped to a
    negative index) when the run started."""
    with pytest.raises(ConfigError) as info:
        load_config({"device": device}, check_data=False)
    assert "cuda:N" in info.value.errors["device"]


def test_data_file_name_too_long_is_a_config_error():
    """Found by fuzzing: a 300-character data_file made Path.is_file raise OSError (ENAMETOOLONG)."""
    with pytest.raises(ConfigError) as info:
        load_config({"task": {"dataset": "csv", "kind": "classification", "data_file": "a" * 300}})
    assert "not found" in info.value.errors["task.data_file"]


def test_data_root_name_too_long_is_a_config_error():
    """Found by fuzzing: a 300-character data_root raised OSError (ENAMETOOLONG) from Path.is_dir."""
    with pytest.raises(ConfigError) as info:
        load_config({"task": {"dataset": "mnist", "model": "lenet5", "data_root": "a" * 300}})
    assert "not found" in info.value.errors["task.data_root"]
