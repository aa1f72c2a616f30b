"""What the API receives and sends: experiment fields in, experiments and learned losses out
(JSON-ready dicts with absolute URLs)."""

from __future__ import annotations

from django.urls import reverse

from lfl_web.api.http import JSON_TYPES, ApiError, json_type
from search_engine.catalog import EXPORT_FORMATS
from search_engine.config import load_config
from search_engine.limits import work_estimate

#: Field of a new experiment -> (JSON type it must have, required).
EXPERIMENT_FIELDS = {"name": (str, True), "description": (str, False), "private": (bool, False), "config": (dict, True)}


def experiment_fields(data: dict) -> dict:
    """The keyword arguments for `services.create_experiment` from a request body, or ApiError 400 by field."""
    errors = {key: f"unknown field (known: {', '.join(EXPERIMENT_FIELDS)})" for key in data
              if key not in EXPERIMENT_FIELDS}
    for key, (expected, required) in EXPERIMENT_FIELDS.items():
        if key not in data:
            if required:
                errors[key] = "this field is required"
        elif type(data[key]) is not expected:
            errors[key] = f"must be {JSON_TYPES[expected]}, got {json_type(data[key])}"
    if errors:
        raise ApiError(400, errors=errors)
    return {key: data[key] for key in EXPERIMENT_FIELDS if key in data}


def experiment_urls(request, experiment) -> dict[str, str]:
    urls = {
        "self": reverse("api:experiment", args=[experiment.pk]),
        "cancel": reverse("api:experiment-cancel", args=[experiment.pk]),
        "page": experiment.get_absolute_url(),
    }
    return {name: request.build_absolute_uri(url) for name, url in urls.items()}


def experiment_summary(request, experiment) -> dict:
    return {**experiment.state_dict(), "urls": experiment_urls(request, experiment)}


def experiment_created(request, experiment) -> dict:
    """The summary of a new experiment with the work its configuration asks for (see work_estimate)."""
    estimate = work_estimate(load_config(experiment.config, check_data=False))
    return {**experiment_summary(request, experiment), "work_estimate": estimate}


def experiment_detail(request, experiment) -> dict:
    """The experiment's snapshot (row, generations, latest candidates), with download links for
    each learned loss."""
    snapshot = experiment.snapshot()
    del snapshot["type"]
    snapshot["experiment"]["urls"] = experiment_urls(request, experiment)
    losses = experiment.learned_losses.with_improvement().select_related("experiment__owner").order_by("rank")
    snapshot["learned_losses"] = [loss_entry(request, loss) for loss in losses]
    return snapshot


def download_urls(request, learned_loss) -> dict[str, str]:
    return {fmt: request.build_absolute_uri(reverse("api:loss-download", args=[learned_loss.pk, fmt]))
            for fmt in EXPORT_FORMATS}


def loss_entry(request, learned_loss) -> dict:
    """A learned loss (annotated `with_improvement`) with its improvement over the baseline (lower
    fitness is better, so positive means better), author, date and download links."""
    experiment = learned_loss.experiment
    return {
        "id": learned_loss.pk, **learned_loss.to_dict(), "improvement": learned_loss.improvement,
        "relative_improvement": learned_loss.relative_improvement,
        "experiment_name": experiment.name, "author": experiment.owner.get_username(),
        "created_at": learned_loss.created_at.isoformat(), "downloads": download_urls(request, learned_loss),
        "experiment_url": request.build_absolute_uri(reverse("api:experiment", args=[experiment.pk])),
    }


#: Field of a transfer request -> (JSON type it must have, required).
TRANSFER_FIELDS = {"dataset": (str, True), "model": (str, True), "data_root": (str, False), "seeds": (int, False),
                   "steps": (int, False)}


def transfer_fields(data: dict) -> dict:
    """The keyword arguments for `transfers.create_transfer` from a request body, or ApiError 400 by field."""
    errors = {key: f"unknown field (known: {', '.join(TRANSFER_FIELDS)})" for key in data
              if key not in TRANSFER_FIELDS}
    for key, (expected, required) in TRANSFER_FIELDS.items():
        if key not in data:
            if required:
                errors[key] = "this field is required"
        elif type(data[key]) is not expected and not (data[key] is None and not required):
            errors[key] = f"must be {JSON_TYPES[expected]}, got {json_type(data[key])}"
    if errors:
        raise ApiError(400, errors=errors)
    return {key: data[key] for key in TRANSFER_FIELDS if data.get(key) is not None}


def transfer_entry(request, run) -> dict:
    """A transfer run with its API address and the learned loss it tests."""
    return {**run.to_dict(), "url": request.build_absolute_uri(reverse("api:transfer", args=[run.pk])),
            "loss_url": request.build_absolute_uri(reverse("api:loss-transfers", args=[run.learned_loss_id]))}
