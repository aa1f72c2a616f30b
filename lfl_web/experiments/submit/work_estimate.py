"""The work estimate on the new-experiment form: the engine's `work_estimate` of the form's values
(for the chosen method), rendered by one partial (experiments/_estimate.html) for the page and for
the form's live updates."""

from __future__ import annotations

from django.conf import settings

from lfl_web.experiments.submit.form_layout import FIELD_PATHS, config_from_values
from search_engine.facade import (  # torch-free without check_data
    ConfigError,
    catalog,
    load_config,
    step_labels,
    work_estimate,
)


def estimate_context(form) -> dict:
    """The partial's context for `form`: its initial values when unbound, else what it parsed; a
    field that did not parse, or a value the engine refuses, is listed instead of a guess."""
    if form.is_bound and not form.is_valid():
        unparsed = {FIELD_PATHS[name]: " ".join(form.errors[name]) for name in FIELD_PATHS if name in form.errors}
        if unparsed:
            return {"problems": unparsed}
    values = form.cleaned_data if form.is_bound else form.initial
    try:
        config = load_config(config_from_values(values), check_data=False)
    except ConfigError as exc:
        return {"problems": exc.errors}
    work, ceiling = work_estimate(config), settings.LFL_MAX_TRAINING_STEPS
    return {
        "work": {key: f"{value:,}" for key, value in work.items()},
        "steps": [(label, f"{work[key]:,}") for key, label in step_labels(config.method).items()],
        "method": catalog.METHODS[config.method].label, "scored": catalog.METHODS[config.method].scored,
        "ceiling": f"{ceiling:,}" if ceiling else "", "over_ceiling": bool(ceiling) and work["total_steps"] > ceiling,
    }
