"""The new-experiment form's map: which form field is which configuration field, which methods
read it, where the page shows it, and the presets (configs/*.json) it can start from.

The page shows the method, the task and the budget up front and everything else in a collapsed
"advanced" part. Every field carries the methods that read it (the catalogue rows' `reads`): the browser's script
shows only the chosen method's fields, and without the script the server ignores the others
(`config_from_values`), so either way a configuration holds only what its method uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils.text import slugify

from search_engine.facade import ConfigError, ExperimentConfig, catalog, load_config  # torch-free

logger = logging.getLogger(__name__)

# Form field -> dotted configuration field (every field of the engine's configuration has one; a test checks).
FIELD_PATHS = {
    "method": "method",
    "dataset": "task.dataset", "model": "task.model", "data_root": "task.data_root", "data_file": "task.data_file",
    "label": "task.label", "kind": "task.kind", "val_fraction": "task.val_fraction",
    "test_fraction": "task.test_fraction", "max_train": "task.max_train",
    "population_size": "search.population_size", "generations": "search.generations",
    "crossover_rate": "search.crossover_rate", "mutation_rate": "search.mutation_rate",
    "tournament_size": "search.tournament_size", "elitism_rate": "search.elitism_rate",
    "init_min_height": "search.init_min_height", "init_max_height": "search.init_max_height",
    "max_height": "search.max_height", "mutation_min_height": "search.mutation_min_height",
    "mutation_max_height": "search.mutation_max_height", "seed_known_losses": "search.seed_known_losses",
    "hall_of_fame_size": "search.hall_of_fame_size",
    "rejection_enabled": "rejection.enabled", "rejection_steps": "rejection.steps",
    "rejection_samples": "rejection.samples",
    "local_search_mode": "local_search.mode", "top_k": "local_search.top_k", "meta_steps": "local_search.meta_steps",
    "inner_steps": "local_search.inner_steps", "meta_lr": "local_search.meta_lr",
    "meta_batch_size": "local_search.batch_size",
    "ml3_meta_steps": "ml3.meta_steps", "ml3_inner_steps": "ml3.inner_steps", "ml3_meta_lr": "ml3.meta_lr",
    "ml3_hidden_units": "ml3.hidden_units", "ml3_hidden_layers": "ml3.hidden_layers",
    "ml3_batch_size": "ml3.batch_size", "ml3_report_every": "ml3.report_every",
    "taylorglo_population_size": "taylorglo.population_size", "taylorglo_generations": "taylorglo.generations",
    "taylorglo_sigma": "taylorglo.sigma", "taylorglo_mean": "taylorglo.mean",
    "training_steps": "training.steps", "batch_size": "training.batch_size", "lr": "training.lr",
    "momentum": "training.momentum", "nesterov": "training.nesterov", "weight_decay": "training.weight_decay",
    "lr_protocol": "training.lr_protocol",
    "meta_test_steps": "meta_test.steps", "meta_test_seeds": "meta_test.seeds",
    "meta_test_lr_milestones": "meta_test.lr_milestones", "meta_test_lr_gamma": "meta_test.lr_gamma",
    "meta_test_tune_lr": "meta_test.tune_lr",
    "evaluation_strategy": "evaluation.strategy", "max_population_chunk": "evaluation.max_population_chunk",
    "evaluation_threads": "evaluation.threads",
    "seed": "seed", "device": "device",
}
FIELD_BY_PATH = {path: name for name, path in FIELD_PATHS.items()}

ALL_METHODS = tuple(catalog.METHODS)


# (title, fields) in display order: up front, then in the collapsed advanced part.
MAIN_SECTIONS = (
    ("Experiment", ("name", "description", "private")),
    ("Method", ("method",)),
    ("Task", ("dataset", "model", "data_file")),
    ("Budget", ("population_size", "generations", "ml3_meta_steps", "taylorglo_population_size",
                "taylorglo_generations", "training_steps")),
)
ADVANCED_SECTIONS = (
    ("Task details", ("data_root", "label", "kind", "val_fraction", "test_fraction", "max_train")),
    ("Genetic programming", ("crossover_rate", "mutation_rate", "tournament_size", "elitism_rate",
                             "seed_known_losses")),
    ("Expression trees", ("init_min_height", "init_max_height", "max_height", "mutation_min_height",
                          "mutation_max_height")),
    ("Rejection screen", ("rejection_enabled", "rejection_steps", "rejection_samples")),
    ("Local search", ("local_search_mode", "top_k", "meta_steps", "inner_steps", "meta_lr", "meta_batch_size")),
    ("Loss network (ML3)", ("ml3_inner_steps", "ml3_meta_lr", "ml3_batch_size", "ml3_report_every",
                            "ml3_hidden_units", "ml3_hidden_layers")),
    ("CMA-ES (TaylorGLO)", ("taylorglo_sigma", "taylorglo_mean")),
    ("Training (fitness)", ("lr_protocol", "batch_size", "lr", "momentum", "weight_decay", "nesterov")),
    ("Meta-test", ("meta_test_steps", "meta_test_seeds", "meta_test_lr_milestones", "meta_test_lr_gamma",
                   "meta_test_tune_lr")),
    ("Run", ("hall_of_fame_size", "evaluation_strategy", "max_population_chunk", "evaluation_threads", "seed",
             "device")),
)
SECTIONS = MAIN_SECTIONS + ADVANCED_SECTIONS


def field_methods(name: str) -> tuple[str, ...]:
    """The methods that read form field `name` (every method for the name, the task, ...)."""
    path = FIELD_PATHS.get(name)
    if path is None:
        return ALL_METHODS
    return tuple(m for m in ALL_METHODS if catalog.method_reads(m, path))


def _methods_tag(methods) -> tuple[str, str]:
    """(data-methods value, "EvoMAL, GP-LFL") for some methods; ("", "") for all of them."""
    chosen = [m for m in ALL_METHODS if m in methods]
    if len(chosen) == len(ALL_METHODS):
        return "", ""
    return " ".join(chosen), ", ".join(catalog.METHODS[m].label for m in chosen)


def method_sections(form, *, advanced: bool) -> list[dict]:
    """The sections of `form` as the template walks them: title, slug, the methods that see the
    section ("" for all) and their labels, and (bound field, its methods, its labels) per field;
    a field's labels are left out where its section already names them."""
    shown = []
    for title, names in ADVANCED_SECTIONS if advanced else MAIN_SECTIONS:
        methods, only = _methods_tag({m for name in names for m in field_methods(name)})
        fields = []
        for name in names:
            field_tag, field_only = _methods_tag(field_methods(name))
            fields.append((form[name], field_tag, "" if field_tag == methods else field_only))
        shown.append({"title": title, "slug": slugify(title), "methods": methods, "only": only, "fields": fields})
    return shown


def get_dotted(data: dict, path: str):
    for key in path.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data


def set_dotted(data: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[last] = value


def config_from_values(values: dict) -> dict:
    """The configuration dict from form values by field name: the chosen method and the fields it
    reads; blank values, the data file and the fields of other methods are left out. GP-LFL's
    configuration says that its local search is off."""
    method = values.get("method") or "evomal"
    config: dict = {"method": method}
    for name, path in FIELD_PATHS.items():
        value = values.get(name)
        if name not in ("data_file", "method") and method in field_methods(name) and value is not None and value != "":
            set_dotted(config, path, value)
    if method == "gplfl":
        set_dotted(config, "local_search.mode", "off")
    return config


#: Folder under the project root whose *.json files are offered as presets.
PRESET_FOLDER = "configs"


@dataclass(frozen=True)
class Preset:
    """A configuration file offered on the form: its key (the file's stem) and what it sets up."""

    key: str
    summary: str  # "EvoMAL on digits / mlp"
    path: Path


def presets() -> dict[str, Preset]:
    """Every valid configuration in PRESET_FOLDER, by key, in catalogue order of their methods
    (read afresh, so a new file is offered without a restart); an invalid one is logged and left out."""
    found = []
    for path in sorted((Path(settings.BASE_DIR) / PRESET_FOLDER).glob("*.json")):
        try:
            config = load_config(path, check_data=False)
        except ConfigError as exc:
            logger.warning("preset %s is not offered: %s", path, exc)
            continue
        summary = f"{catalog.METHODS[config.method].label} on {config.task.dataset} / {config.task.model}"
        found.append((ALL_METHODS.index(config.method), Preset(path.stem, summary, path)))
    return {preset.key: preset for _, preset in sorted(found, key=lambda item: (item[0], item[1].key))}


def preset_config(key: str | None) -> dict:
    """The full configuration of a preset (engine defaults filled in); the defaults for None.

    Raises KeyError for an unknown preset.
    """
    if key is None:
        return ExperimentConfig().to_dict()
    return load_config(presets()[key].path, check_data=False).to_dict()


def initial_values(preset: str | None) -> dict:
    """Initial form values: the engine's defaults, or a preset's configuration (and a name for it)."""
    config = preset_config(preset)
    values = {name: get_dotted(config, path) for name, path in FIELD_PATHS.items() if name != "data_file"}
    if preset:
        values["name"] = f"{preset}: {presets()[preset].summary}"
    return values
