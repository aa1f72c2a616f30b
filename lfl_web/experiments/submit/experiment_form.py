"""The new-experiment form.

The form only parses (numbers, choices, the upload's extension); the engine's `load_config` is the
single judge of a configuration, and each of its errors (keyed "search.crossover_rate") is put back
on the form field it came from. It holds the fields of every method (EvoMAL, GP-LFL, ML3,
TaylorGLO); the catalogue says which method reads which, and on submit only the chosen method's
fields go into the configuration (the engine fills the rest with its defaults). Option lists come
from the engine's torch-free catalogue; nothing here imports torch. The field layout (`SECTIONS`)
and the presets (configs/*.json) are in `submit.form_layout`.
"""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.core.exceptions import ValidationError

from lfl_web.experiments.submit.form_layout import (
    FIELD_BY_PATH,
    FIELD_PATHS,
    config_from_values,
    field_methods,
    initial_values,
    method_sections,
)
from lfl_web.experiments.submit.uploads import MAX_UPLOAD_BYTES, UPLOAD_EXTENSIONS
from search_engine.facade import EVALUATION_STRATEGIES as ENGINE_STRATEGIES  # torch-free
from search_engine.facade import catalog

LOCAL_SEARCH_MODES = (("off", "off (pure GP)"), ("all", "all (EvoMAL)"), ("top_k", "top k per generation"))
LR_PROTOCOLS = (("tuned", "tuned: the baseline's best rate, losses at its gradient scale"),
                ("fixed", "fixed: the learning rate as given (the paper's protocol)"))
EVALUATION_STRATEGIES = tuple((name, name) for name in ENGINE_STRATEGIES)
METHOD_CHOICES = tuple((m.name, m.label) for m in catalog.METHODS.values())


# Numbers are typed into text inputs: a browser sends a number input's unreadable text ("abc",
# "1e") as an empty value, which would read as "use the default"; a text input sends what was
# typed, and the field says why it is not a number.


def _int(label, **kw):
    return forms.IntegerField(label=label, required=False, widget=forms.TextInput(attrs={"inputmode": "numeric"}),
                              **kw)


def _float(label, **kw):
    return forms.FloatField(label=label, required=False, widget=forms.TextInput, **kw)


class StepListField(forms.CharField):
    """Step numbers typed as "100000, 135000"; a list of integers once cleaned (blank: the default)."""

    def prepare_value(self, value):
        return ", ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value

    def to_python(self, value):
        text = super().to_python(value).replace(",", " ")
        if not text.strip():
            return None
        try:
            return [int(part) for part in text.split()]
        except ValueError:
            raise ValidationError("Enter whole step numbers separated by commas.", code="invalid") from None


class ExperimentForm(forms.Form):
    """Everything a search needs; a blank number means the engine's default (shown as the placeholder)."""

    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    private = forms.BooleanField(required=False, help_text="Only you (and staff) can see it.")

    method = forms.ChoiceField(
        required=False, choices=METHOD_CHOICES, initial="evomal", widget=forms.RadioSelect,
        error_messages={"invalid_choice": "unknown method %(value)s; choose one of: " + ", ".join(catalog.METHODS)},
    )

    dataset = forms.ChoiceField(
        choices=[(d.name, d.label) for d in catalog.DATASETS.values()],  # labels short enough for the grid
        help_text="digits, digits28 and diabetes are built in; csv and npz read the data file below; "
                  "mnist, cifar10, … are read from the data root (advanced settings).",
    )
    model = forms.ChoiceField(choices=[(n, n) for n in catalog.MODEL_NAMES])
    data_root = forms.CharField(
        label="Data root", required=False, help_text="Server folder holding torchvision datasets (mnist, cifar10, …)."
    )
    data_file = forms.FileField(
        label="Data file", required=False,
        help_text="Your own data for dataset csv or npz: a .csv with a header row and numeric features, "
                  "or a .npz with arrays x and y (set its kind and label column in the advanced settings).",
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

    population_size = _int("Population size", help_text="Loss expressions per generation.")
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

    ml3_meta_steps = _int("Meta steps", help_text="Adam steps on the loss network's weights, each through "
                                                  "freshly unrolled training.")
    ml3_inner_steps = _int("Inner steps", help_text="Differentiable SGD steps per meta step (at the training "
                                                    "learning rate).")
    ml3_meta_lr = _float("Meta learning rate", help_text="Adam's learning rate on the loss network.")
    ml3_hidden_units = _int("Hidden units", help_text="Width of each hidden layer of the loss network.")
    ml3_hidden_layers = _int("Hidden layers")
    ml3_batch_size = _int("Meta batch size", help_text="Training and validation batch of each meta step.")
    ml3_report_every = _int("Report every", help_text="Meta steps between two scored snapshots of the network "
                                                      "(one point of the dashboard's curve each).")

    taylorglo_population_size = _int("Population size", help_text="CMA-ES candidate polynomials per generation "
                                                                  "(at least 4).")
    taylorglo_generations = _int("Generations", help_text="CMA-ES generations.")
    taylorglo_sigma = _float("Initial step size σ", help_text="CMA-ES's starting spread of the 8 parameters.")
    taylorglo_mean = _float("Initial mean", help_text="Where CMA-ES starts all 8 parameters (TaylorGLO: 0).")

    training_steps = _int("Training steps", help_text="SGD steps of each fitness training: every loss scored "
                                                      "trains a fresh model this long.")
    batch_size = _int("Batch size")
    lr = _float("Learning rate")
    momentum = _float("Momentum")
    weight_decay = _float("Weight decay")
    nesterov = forms.BooleanField(label="Nesterov", required=False)
    lr_protocol = forms.ChoiceField(
        label="Learning-rate protocol", choices=LR_PROTOCOLS,
        help_text="Tuned: every loss trains at the baseline's best rate, scaled to the baseline's gradient size, so "
                  "no loss wins by acting as a different learning rate. Fixed: the paper's protocol, every loss "
                  "as it is at the learning rate above.",
    )

    meta_test_steps = _int("Meta-test steps", help_text="Training steps per model when the best loss is tested "
                                                          "against the baseline after the search.")
    meta_test_seeds = _int("Meta-test seeds", help_text="Models trained with each loss, one per seed.")
    meta_test_lr_milestones = StepListField(
        label="Meta-test LR milestones", required=False,
        help_text="Steps at which the meta-test's learning rate is multiplied by the decay below, e.g. "
                  "“100000, 135000” (blank: a constant rate).",
    )
    meta_test_lr_gamma = _float("Meta-test LR decay", help_text="Factor applied at each milestone.")
    meta_test_tune_lr = forms.BooleanField(
        label="At each loss's best learning rate", required=False,
        help_text="Meta-test the learned loss and the baseline again, each at its own best learning rate "
                  "picked on validation data (half-decades 0.01 to 1, extended past an edge); reports lead "
                  "with this comparison. Unticked: only at the search's learning rate (the paper's protocol), "
                  "where a loss that rescales the gradient can look better; faster.")

    evaluation_strategy = forms.ChoiceField(
        label="Evaluation strategy", choices=EVALUATION_STRATEGIES,
        help_text="“sequential” trains one candidate at a time, “batched” a chunk of them as one program, “auto” "
                  "picks by the model and the device, “measure” times both on the task. A cancel stops within a few "
                  "training steps: with “sequential” between single candidates (only the one in training is lost), "
                  "with “batched” the chunk's unfinished candidates are dropped.",
    )
    max_population_chunk = _int("Max population chunk", help_text="Most candidates trained together as one program; "
                                "also the chunk a worker takes, so smaller chunks spread a generation over more workers.")
    evaluation_threads = _int("CPU threads", help_text="Torch threads for the search's math on a CPU. Part of the "
                              "result: a thread count changes float rounding, so it is not taken from the machine.")
    seed = _int("Seed", help_text="Drives every random choice of the search.")
    device = forms.CharField(required=False, help_text="auto, cpu, cuda or cuda:N.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        defaults = initial_values(None)
        for name, field in self.fields.items():
            if isinstance(field, (forms.IntegerField, forms.FloatField)) and defaults.get(name) is not None:
                field.widget.attrs["placeholder"] = f"{defaults[name]:g}"

    def chosen_method(self) -> str:
        """The method the form is set to: the submitted one once bound, else the initial one."""
        value = self["method"].value() or "evomal"
        return value if value in catalog.METHODS else "evomal"

    def method_options(self):
        """[(radio widget, catalogue Method)] for the method choice, in catalogue order."""
        return [(radio, catalog.METHODS[radio.data["value"]]) for radio in self["method"]]

    def main_sections(self):
        """The sections shown up front, each field tagged with its methods (`form_layout.method_sections`)."""
        return method_sections(self, advanced=False)

    def advanced_sections(self):
        """The sections of the collapsed advanced part."""
        return method_sections(self, advanced=True)

    def advanced_has_errors(self) -> bool:
        """Whether a field of the collapsed advanced part has an error (then it is shown open)."""
        return any(field.errors for section in self.advanced_sections() for field, _, _ in section["fields"])

    def clean_method(self):
        return self.cleaned_data.get("method") or "evomal"

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
        method = data.get("method")
        if method:  # another method's fields are hidden and not submitted as configuration: nothing to fix there
            for name in [name for name in self._errors if name in FIELD_PATHS and method not in field_methods(name)]:
                del self._errors[name]
        upload, dataset = data.get("data_file"), data.get("dataset")
        if upload and dataset and Path(upload.name).suffix.lower() != f".{dataset}":
            self.add_error("data_file", f"a {Path(upload.name).suffix.lower()} file needs dataset "
                                        f"{Path(upload.name).suffix.lower()[1:]!r}, but dataset is {dataset!r}")
        return data

    def config_data(self) -> dict:
        """The configuration dict from the cleaned fields of the chosen method; blank fields are left
        to the engine's defaults (the data file is not among them: `create_experiment` stores the
        upload and names its copy)."""
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
