"""Answers as pandas DataFrames (pandas is optional: `to_frame` says how to install it when missing)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


def to_frame(items: Iterable):
    """One row per object (a leaderboard, a hall of fame, experiments, transfers), one column per
    field; nested verdicts and comparisons are flattened ("verdict_code", "tuned_comparison_p_value")."""
    try:
        import pandas
    except ImportError:
        raise ImportError("to_frame needs pandas: pip install 'lfl-client[pandas]'") from None
    return pandas.DataFrame([_row(item) for item in items])


def _row(item) -> dict:
    row = {}
    for f in dataclasses.fields(item):
        if f.name == "raw":
            continue
        value = getattr(item, f.name)
        if dataclasses.is_dataclass(value):
            row.update({f"{f.name}_{k}": v for k, v in _row(value).items()})
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            row[f.name] = len(value)  # generations, learned losses: counted, not nested
        else:
            row[f.name] = value
    return row
