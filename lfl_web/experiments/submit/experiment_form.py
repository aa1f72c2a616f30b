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

import types
import typing
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
from search_engine.facade import catalog, config_field  # torch-free

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

    # Choices are callables, read when a form is made: the catalogue lists the installed plugins' rows too.
    dataset = forms.ChoiceField(
        choices=lambda: [(d.name, d.label) for d in catalog.datasets().values()],  # labels short enough for the grid
        help_text="digits, digits28 and diabetes are built in; csv and npz read the data file below; "
                  "mnist, cifar10, … are read from the data root (advanced settings); the others come "
                  "from plugins installed on the server.",
    )
    model = forms.ChoiceField(choices=lambda: [(m.name, m.label) for m in catalog.models().values()])
    data_file = forms.FileField(
        label="Data file", required=False,
        help_text="Your own data for dataset csv or npz: a .csv with a header row and numeric features, "
                  "or a .npz with arrays x and y (set its kind and label column in the advanced settings).",
    )

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


#: Form fields whose widgets the page chooses (the method's radio buttons, the catalogue's lists, the
#: upload); every other field of FIELD_PATHS is built from the facts the engine keeps beside it.
PAGE_FIELDS = ("method", "dataset", "model", "data_file")


def config_form_field(name: str) -> forms.Field:
    """The form field of configuration field FIELD_PATHS[name]: its label, help, choices (and how they
    are listed) come from beside the engine's dataclass field (`search_engine.fields.setting`)."""
    words, annotation, default = config_field(FIELD_PATHS[name])
    optional = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    kind = next(a for a in typing.get_args(annotation) if a is not type(None)) if optional else annotation
    kw = {"label": words.label or None, "help_text": words.help}
    if kind is bool:
        return forms.BooleanField(required=False, **kw)
    if kind is int:
        return _int(**kw)
    if kind is float:
        return _float(**kw)
    if words.choices:
        listed = tuple(zip(words.choices, words.choice_labels or words.choices, strict=True))
        return forms.ChoiceField(choices=(("", "—"), *listed) if default is None else listed,
                                 required=default is not None, **kw)
    if typing.get_origin(kind) is tuple:
        return StepListField(required=False, **kw)
    return forms.CharField(required=False, **kw)


ExperimentForm.base_fields.update(
    {name: config_form_field(name) for name in FIELD_PATHS if name not in PAGE_FIELDS})
