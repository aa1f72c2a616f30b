"""Reading untrusted JSON into the configuration dataclasses: the types, unknown fields and files.

`build(cls, data, prefix, errors)` builds a dataclass from JSON, recording a message per dotted
field (a wrong type, an unknown field with the closest known name); `read_source` reads a dict, a
JSON text or a file. `config.load_config` uses both, then checks ranges. Torch-free.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """One or more invalid configuration fields; `errors` maps dotted field names to messages."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


def _type_error(expected: str, value: Any) -> str:
    return f"must be {expected}, got {value!r}"


_LARGEST_FLOAT = 1.7976931348623157e308
#: torch keeps a device index in an int8, so "cuda:128" would silently become cuda:-128.
_MAX_CUDA_INDEX = 127


def is_cuda_index(device: str) -> bool:
    """'cuda:N' with N written as torch reads it: ASCII digits, no leading zero, at most 127."""
    index = device.removeprefix("cuda:")
    return (device.startswith("cuda:") and index.isascii() and index.isdigit()
            and (index == "0" or not index.startswith("0")) and int(index) <= _MAX_CUDA_INDEX)


def _coerce(tp: Any, value: Any) -> tuple[Any, str | None]:
    """Check one leaf value against its annotation; return (value, error message or None)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None, None
        return _coerce(args[0], value)
    if tp is bool:
        return (value, None) if isinstance(value, bool) else (value, _type_error("true or false", value))
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return (value, None) if ok else (value, _type_error("an integer", value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, _type_error("a number", value)
        # abs(int) > 1.8e308 overflows math.isfinite (OverflowError); such an int is not finite as a float.
        if (isinstance(value, int) and abs(value) > _LARGEST_FLOAT) or not math.isfinite(value):
            return value, _type_error("a finite number", value)
        return float(value), None
    if tp is str:
        return (value, None) if isinstance(value, str) else (value, _type_error("a string", value))
    if typing.get_origin(tp) is tuple:  # tuple[int, ...]: a JSON list of integers
        if not isinstance(value, (list, tuple)):
            return value, _type_error("a list of integers", value)
        items = [_coerce(int, v) for v in value]
        bad = next((problem for _, problem in items if problem), None)
        return (tuple(value), None) if bad is None else (value, "every item " + bad)
    raise TypeError(f"unsupported config annotation {tp!r}")


def build(cls: type, data: Any, prefix: str, errors: dict[str, str]) -> Any:
    """Build dataclass `cls` from `data`, recording errors under dotted names."""
    if not isinstance(data, dict):
        errors[prefix.rstrip(".") or "config"] = _type_error("an object", data)
        return cls()
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(names)})"
            errors[prefix + (key if isinstance(key, str) and key else repr(key))] = "unknown field" + hint
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, data[name], f"{prefix}{name}.", errors)
            continue
        value, problem = _coerce(tp, data[name])
        if problem:
            errors[prefix + name] = problem
        else:
            kwargs[name] = value
    return cls(**kwargs)


def read_source(source: dict | str | Path) -> Any:
    if not isinstance(source, (str, Path)):
        return source  # a dict, or any other JSON value (reported by _build as "must be an object")
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        path = Path(source)
        try:
            text = path.read_text()
        except (OSError, ValueError) as exc:  # ValueError: a null byte in the path, or non-UTF-8 bytes
            raise ConfigError({"config": f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"}) from exc
    else:
        text = source
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError({"config": f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"}) from exc
    except RecursionError as exc:
        raise ConfigError({"config": "invalid JSON: nested too deeply"}) from exc
