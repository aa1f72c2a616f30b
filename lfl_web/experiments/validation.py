"""Checking a configuration before it is stored: the engine's own validation, and server paths
confined to the folders this server reads data from."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError


def validated_config(data) -> dict:
    """The stored form of a configuration (defaults filled in).

    Raises ValidationError on `config` listing each bad field as "dotted.name: message".
    """
    from search_engine.config import ConfigError, load_config  # torch-free; data checks import torch lazily

    if not isinstance(data, dict):  # a string would be read as a path or JSON text by load_config
        raise ValidationError({"config": f"must be a JSON object, got {type(data).__name__}"})
    outside = server_paths_outside_data_dirs(data)
    if outside:
        raise ValidationError({"config": outside})
    try:
        return load_config(data, check_data=True).to_dict()
    except ConfigError as exc:
        raise ValidationError({"config": [f"{field}: {message}" for field, message in exc.errors.items()]}) from None


def allowed_data_dirs() -> list[Path]:
    """Server folders an experiment may read data from: settings.LFL_DATA_DIRS and the uploads folder."""
    from lfl_web.experiments.uploads import upload_dir

    return [*map(Path, settings.LFL_DATA_DIRS), upload_dir()]


def server_paths_outside_data_dirs(data: dict) -> list[str]:
    """Messages for task.data_root / task.data_file values that point outside the allowed folders."""
    task = data.get("task")
    if not isinstance(task, dict):
        return []
    allowed = [d.resolve() for d in allowed_data_dirs()]
    problems = []
    for name in ("data_root", "data_file"):
        value = task.get(name)
        if isinstance(value, str) and value:
            path = Path(value).resolve()
            if not any(path == d or d in path.parents for d in allowed):
                problems.append(f"task.{name}: {value!r} is outside the folders this server reads data from "
                                f"({', '.join(str(d) for d in allowed)}; set LFL_DATA_DIRS to add one)")
    return problems
