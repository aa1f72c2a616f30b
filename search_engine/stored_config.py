"""Configurations stored before a field existed: read them as they ran.

A configuration is stored whole (a checkpoint's, a database row's), so a field added later is
absent from it. Where the field's default is not what such a configuration ran with, it is read
with the value it ran with, and a search resumed from it continues so.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from search_engine.config import ExperimentConfig

#: Fields whose default is not what configurations stored before the field existed ran with:
#: (section, field) -> the value such a stored configuration (a checkpoint's, a database row's) means.
STORED_BEFORE: dict[tuple[str, str], Any] = {("training", "lr_protocol"): "fixed"}


def as_stored(stored: dict) -> dict:
    """A stored configuration with every field it predates set to the value it ran with."""
    out = dict(stored)
    for (section, name), value in STORED_BEFORE.items():
        part = out.get(section)
        if isinstance(part, dict) and name not in part:
            out[section] = {**part, name: value}
    return out


def adopt_stored(config: ExperimentConfig, stored: dict) -> ExperimentConfig:
    """`config` continuing a search stored with `stored`: fields the stored search predates keep the
    value it ran with (a checkpoint from before the tuned protocol resumes with the fixed one)."""
    for (section, name), value in STORED_BEFORE.items():
        part = stored.get(section)
        if isinstance(part, dict) and name not in part:
            current = getattr(config, section)
            config = dataclasses.replace(config, **{section: dataclasses.replace(current, **{name: value})})
    return config
