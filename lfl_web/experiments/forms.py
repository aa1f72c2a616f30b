"""The new-experiment form and the leaderboard's filters.

The form only parses (numbers, choices, the upload's extension); the engine's `load_config` is the
single judge of a configuration, and each of its errors (keyed "search.crossover_rate") is put back
on the form field it came from. Option lists come from the engine's torch-free catalogue; nothing
here imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from lfl_web.experiments.files import MAX_UPLOAD_BYTES, UPLOAD_EXTENSIONS
from lfl_web.experiments.models import LEADERBOARD_ORDERINGS
from search_engine import catalog
from search_engine.config import ExperimentConfig, load_config  # torch-free

LOCAL_SEARCH_MODES = (("off", "off (pure GP)"), ("all", "all (EvoMAL)"), ("top_k", "top k per generation"))

# Presets: (label, file under the project root).
PRESETS = {
    "quick": ("Quick demo", "configs/quick.json"),
    "mnist_lenet5": ("EvoMAL-faithful (MNIST, LeNet-5)", "configs/mnist_lenet5.json"),
}

EVALUATION_STRATEGIES = (("auto", "auto"), ("batched", "batched"), ("sequential", "sequential"))

# Form field -> dotted configuration field (every field of the engine's configuration has one; a test checks).
FIELD_PATHS = {
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
    "training_steps": "training.steps", "batch_size": "training.batch_size", "lr": "training.lr",
    "momentum": "training.momentum", "nesterov": "training.nesterov", "weight_decay": "training.weight_decay",
    "meta_test_steps": "meta_test.steps", "meta_test_seeds": "meta_test.seeds",
    "evaluation_strategy": "evaluation.strategy", "max_population_chunk": "evaluation.max_population_chunk",
    "seed": "seed", "device": "device",
}
FIELD_BY_PATH = {path: name for name, path in FIELD_PATHS.items()}

# How the template groups the fields.
SECTIONS = (
    ("Experiment", ("name", "description", "private")),
    ("Task", ("dataset", "model", "data_root", "data_file", "label", "kind", "val_fraction", "test_fraction",
              "max_train")),
    ("Search", ("population_size", "generations", "crossover_rate", "mutation_rate", "tournament_size",
                "elitism_rate", "hall_of_fame_size", "seed_known_losses")),
    ("Expression trees", ("init_min_height", "init_max_height", "max_height", "mutation_min_height",
                          "mutation_max_height")),
    ("Rejection screen", ("rejection_enabled", "rejection_steps", "rejection_samples")),
    ("Local search", ("local_search_mode", "top_k", "meta_steps", "inner_steps", "meta_lr", "meta_batch_size")),
    ("Training (fitness)", ("training_steps", "batch_size", "lr", "momentum", "weight_decay", "nesterov")),
    ("Meta-test", ("meta_test_steps", "meta_test_seeds")),
    ("Run", ("evaluation_strategy", "max_population_chunk", "seed", "device")),
)


def _int(label, **kw):
    return forms.IntegerField(label=label, required=False, **kw)


def _float(label, **kw):
    return forms.FloatField(label=label, required=False, **kw)


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
    """The configuration dict from form values by field name; blank values and the data file are left out."""
    config: dict = {}
    for name, path in FIELD_PATHS.items():
        value = values.get(name)
        if name != "data_file" and value is not None and value != "":
            set_dotted(config, path, value)
    return config


def preset_config(key: str | None) -> dict:
    """The full configuration of a preset (engine defaults filled in); the defaults for None.

    Raises KeyError for an unknown preset.
    """
    if key is None:
        return ExperimentConfig().to_dict()
    path = Path(settings.BASE_DIR) / PRESETS[key][1]
    return load_config(json.loads(path.read_text()), check_data=False).to_dict()


def initial_values(preset: str | None) -> dict:
    """Initial form values: the engine's defaults, or a preset's configuration."""
    config = preset_config(preset)
    values = {name: get_dotted(config, path) for name, path in FIELD_PATHS.items() if name != "data_file"}
    if preset:
        values["name"] = PRESETS[preset][0]
    return values


class ExperimentForm(forms.Form):
    """Everything a search needs; a blank number means the engine's default (shown as the placeholder)."""

    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    private = forms.BooleanField(required=False, help_text="Only you (and staff) can see it.")

    dataset = forms.ChoiceField(
        choices=[(d.name, d.label) for d in catalog.DATASETS.values()],  # labels short enough for the grid
        help_text="digits, digits28 and diabetes are built in; csv and npz read the data file below; "
                  "mnist, cifar10, … are read from the data root.",
    )
    model = forms.ChoiceField(choices=[(n, n) for n in catalog.MODEL_NAMES])
    data_root = forms.CharField(
        label="Data root", required=False, help_text="Server folder holding torchvision datasets (mnist, cifar10, …)."
    )
    data_file = forms.FileField(
        label="Data file", required=False,
        help_text="Your own data for dataset csv or npz: a .csv with a header row and numeric features, "
                  "or a .npz with arrays x and y.",
    )
    label = forms.CharField(required=False, help_text="CSV label column or NPZ label key (default: y / the last column).")
    kind = forms.ChoiceField(
        required=False, choices=[("", "—"), ("classification", "classification"), ("regression", "regression")],
        help_text="For an uploaded file: what its labels are.",
    )
    val_fraction = _float("Validation fraction", help_text="Share of the training data held out to score losses.")
    test_fraction = _float(
        "Test fraction", help_text="Share held out for the meta-test (built-in and uploaded data; mnist, cifar10, … "
                                   "use their official test split)."
    )
    max_train = _int("Max training samples", help_text="Subsample the training split (blank: all).")

    population_size = _int("Population size")
    generations = _int("Generations")
    crossover_rate = _float("Crossover rate")
    mutation_rate = _float("Mutation rate", help_text="Crossover + mutation rate must be at most 1.")
    tournament_size = _int("Tournament size")
    elitism_rate = _float("Elitism rate", help_text="Share of the best kept unchanged for the next generation.")
    hall_of_fame_size = _int("Hall of fame size", help_text="How many of the best losses are kept and listed.")
    seed_known_losses = forms.BooleanField(
        label="Seed known losses", required=False, help_text="Start from cross-entropy / squared error."
    )

    init_min_height = _int("Initial min height", help_text="Heights of the random trees of the first generation "
                                                           "(ramped half-and-half).")
    init_max_height = _int("Initial max height")
    max_height = _int("Max tree height", help_text="No operator may grow a tree past it (at most 17).")
    mutation_min_height = _int("Mutation min height", help_text="Height of the random subtree a mutation inserts.")
    mutation_max_height = _int("Mutation max height")

    rejection_enabled = forms.BooleanField(
        label="Screen candidates first", required=False,
        help_text="Reject a loss that ignores the prediction, or under which directly optimizing a fixed subset's "
                  "outputs does not improve the metric, before training with it.",
    )
    rejection_steps = _int("Screen steps", help_text="Adam steps on the subset's outputs.")
    rejection_samples = _int("Screen samples", help_text="Size of the fixed training subset.")

    local_search_mode = forms.ChoiceField(
        label="Mode", choices=LOCAL_SEARCH_MODES,
        help_text="Learn edge weights for every accepted candidate (EvoMAL), only each generation's k best, or none.",
    )
    top_k = _int("Top k", help_text="With mode top k: how many of each generation's best are refined.")
    meta_steps = _int("Meta steps")
    inner_steps = _int("Inner steps", help_text="Differentiable SGD steps per meta step.")
    meta_lr = _float("Meta learning rate")
    meta_batch_size = _int("Meta batch size", help_text="Training and validation batch of each meta step.")

    training_steps = _int("Steps")
    batch_size = _int("Batch size")
    lr = _float("Learning rate")
    momentum = _float("Momentum")
    weight_decay = _float("Weight decay")
    nesterov = forms.BooleanField(label="Nesterov", required=False)

    meta_test_steps = _int("Meta-test steps", help_text="Training steps per model when the best loss is tested "
                                                          "against the baseline after the search.")
    meta_test_seeds = _int("Meta-test seeds", help_text="Models trained with each loss, one per seed.")

    evaluation_strategy = forms.ChoiceField(
        label="Evaluation strategy", choices=EVALUATION_STRATEGIES,
        help_text="“sequential” trains one candidate at a time, “batched” a chunk of them as one program, “auto” "
                  "times both on the task and keeps the faster. A cancel stops within a few training steps: with "
                  "“sequential” between single candidates (only the one in training is lost), with “batched” the "
                  "chunk's unfinished candidates are dropped.",
    )
    max_population_chunk = _int("Max population chunk", help_text="Most candidates trained together as one program.")
    seed = _int("Seed", help_text="Drives every random choice of the search.")
    device = forms.CharField(required=False, help_text="auto, cpu, cuda or cuda:N.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        defaults = initial_values(None)
        for name, field in self.fields.items():
            if isinstance(field, (forms.IntegerField, forms.FloatField)) and defaults.get(name) is not None:
                field.widget.attrs["placeholder"] = f"{defaults[name]:g}"

    def sections(self):
        """[(title, [bound fields])] in display order."""
        return [(title, [self[name] for name in names]) for title, names in SECTIONS]

    def clean_data_file(self):
        upload = self.cleaned_data.get("data_file")
        if upload:
            suffix = Path(upload.name).suffix.lower()
            if suffix not in UPLOAD_EXTENSIONS:
                raise ValidationError(f"must be a .csv or .npz file, got {upload.name!r}")
            if upload.size > MAX_UPLOAD_BYTES:
                raise ValidationError(f"is {upload.size / 2**20:.0f} MB; at most {MAX_UPLOAD_BYTES // 2**20} MB")
        return upload

    def clean(self):
        data = super().clean()
        upload, dataset = data.get("data_file"), data.get("dataset")
        if upload and dataset and Path(upload.name).suffix.lower() != f".{dataset}":
            self.add_error("data_file", f"a {Path(upload.name).suffix.lower()} file needs dataset "
                                        f"{Path(upload.name).suffix.lower()[1:]!r}, but dataset is {dataset!r}")
        return data

    def config_data(self) -> dict:
        """The configuration dict from the cleaned fields; blank fields are left to the engine's defaults
        (the data file is not among them: `create_experiment` stores the upload and names its copy)."""
        return config_from_values(self.cleaned_data)

    def experiment_fields(self) -> dict:
        """The keyword arguments of `services.create_experiment` from the cleaned form."""
        data = self.cleaned_data
        return {"name": data["name"], "description": data["description"], "private": data["private"],
                "config": self.config_data(), "upload": data.get("data_file") or None}

    def add_experiment_errors(self, errors: dict[str, str]) -> None:
        """Put each message of InvalidExperiment.errors on its form field (by name or dotted path)."""
        for key, message in errors.items():
            field = key if key in self.fields else FIELD_BY_PATH.get(key)
            self.add_error(field, message if field else f"{key}: {message}")  # a form-wide error names its field


def _filter_field(what: str, choices: list[tuple[str, str]]) -> forms.ChoiceField:
    known = ", ".join(value for value, _ in choices if value)
    message = f"unknown {what} '%(value)s' (ignored); choose one of: {known}"
    return forms.ChoiceField(required=False, choices=choices, error_messages={"invalid_choice": message})


class LeaderboardFilterForm(forms.Form):
    """GET parameters of the leaderboard; an invalid one is reported and ignored."""

    sort = _filter_field("sort key", [(k, k) for k in LEADERBOARD_ORDERINGS])
    dataset = _filter_field("dataset", [("", "any dataset")] + [(n, n) for n in catalog.DATASET_NAMES])
    model = _filter_field("model", [("", "any model")] + [(n, n) for n in catalog.MODEL_NAMES])
    metric = _filter_field("metric", [("", "any metric")] + [(m, m) for m in catalog.METRICS])
    ranks = _filter_field("ranks", [("best", "each experiment's best"), ("all", "every hall-of-fame entry")])

    def choices(self) -> dict:
        """The valid parameters (defaults for missing or invalid ones) as keyword arguments of `ranked_by`."""
        self.is_valid()  # fields with an error are left out of cleaned_data
        valid = self.cleaned_data
        return {
            "sort": valid.get("sort") or "fitness", "dataset": valid.get("dataset", ""),
            "model": valid.get("model", ""), "metric": valid.get("metric", ""),
            "best_only": valid.get("ranks") != "all",
        }
