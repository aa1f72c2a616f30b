"""Checking a configuration before it is stored: the engine's own validation, and server paths
confined to the folders this server reads data from.

Every problem with a configuration belongs to one dotted field ("search.crossover_rate"). On the
model the problems are ValidationError messages under `config` that keep the field and the text
apart in their params (the admin shows them as "search.crossover_rate: must be ..."); callers of
the services get them as one dict, `InvalidExperiment.errors`. Nothing splits a message apart.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError

from lfl_web.experiments.submit.uploads import upload_dir
from search_engine.facade import (  # torch-free, check_task too (numpy)
    ConfigError,
    check_task,
    load_config,
    step_labels,
    work_estimate,
)

#: The code of a ValidationError about one configuration field (params: field, message).
CONFIG_FIELD = "config_field"

#: The kinds of steps of a work estimate, as the ceiling's message and the form's estimate name them.


class InvalidExperiment(ValidationError):
    """A new experiment that was not stored, and why.

    `errors` maps a model field ("name") or a dotted configuration field ("search.crossover_rate",
    "task.data_file") to its message; "config" holds what concerns the configuration as a whole.
    """

    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = dict(errors)


def config_error(errors: dict[str, str]) -> ValidationError:
    """A ValidationError on `config` with one message per dotted field of `errors`."""
    return ValidationError({"config": [
        ValidationError("%(field)s: %(message)s", code=CONFIG_FIELD, params={"field": field, "message": message})
        for field, message in errors.items()
    ]})


def errors_by_field(error: ValidationError) -> dict[str, str]:
    """A model's ValidationError as {field: message}, each configuration problem under its dotted
    field (see `config_error`); several messages for one field are joined."""
    found: dict[str, list[str]] = {}
    for field, problems in error.update_error_dict({}).items():
        for problem in problems:
            if problem.code == CONFIG_FIELD:
                found.setdefault(problem.params["field"], []).append(problem.params["message"])
            else:
                found.setdefault(field, []).extend(problem.messages)
    return {field: " ".join(messages) for field, messages in found.items()}


def validated_config(data) -> dict:
    """The stored form of a configuration (defaults filled in).

    Raises ValidationError on `config`: one message per bad dotted field (see `config_error`), or
    one under "config" when it asks for more training than this server allows. The data is read
    last, once everything cheaper has passed.
    """
    if not isinstance(data, dict):  # a string would be read as a path or JSON text by load_config
        raise ValidationError({"config": f"must be a JSON object, got {type(data).__name__}"})
    outside = server_paths_outside_data_dirs(data)
    if outside:
        raise config_error(outside)
    try:
        config = load_config(data, check_data=False)
    except ConfigError as exc:
        raise config_error(exc.errors) from None
    problems = over_the_ceiling(config) or check_task(config.task, config.seed)
    if problems:
        raise config_error(problems)
    return config.to_dict()


def over_the_ceiling(config) -> dict[str, str]:
    """{"config": message} when the configuration's work estimate passes settings.LFL_MAX_TRAINING_STEPS."""
    ceiling, work = settings.LFL_MAX_TRAINING_STEPS, work_estimate(config)
    if not ceiling or work["total_steps"] <= ceiling:
        return {}
    parts = ", ".join(f"{work[key]:,} {label}" for key, label in step_labels(config.method).items())
    return {"config": f"asks for {work['total_steps']:,} training steps in total ({parts}), more than the "
                      f"{ceiling:,} this server allows (LFL_MAX_TRAINING_STEPS); lower the population, "
                      "the generations or the step counts"}



def allowed_data_dirs() -> list[Path]:
    """Server folders an experiment may read data from: settings.LFL_DATA_DIRS and the uploads folder."""
    return [*map(Path, settings.LFL_DATA_DIRS), upload_dir()]


def server_paths_outside_data_dirs(data: dict) -> dict[str, str]:
    """{"task.data_root" / "task.data_file": message} for values that point outside the allowed folders."""
    task = data.get("task")
    if not isinstance(task, dict):
        return {}
    allowed = [d.resolve() for d in allowed_data_dirs()]
    problems = {}
    for name in ("data_root", "data_file"):
        value = task.get(name)
        if isinstance(value, str) and value:
            path = Path(value).resolve()
            if not any(path == d or d in path.parents for d in allowed):
                problems[f"task.{name}"] = (f"{value!r} is outside the folders this server reads data from "
                                            f"({', '.join(str(d) for d in allowed)}; set LFL_DATA_DIRS to add one)")
    return problems
