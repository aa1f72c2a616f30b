"""The JSON API's operations. Every one needs a token (see auth.py); each takes what inputs.py
defines, calls a query or a service named for its use, and answers what outputs.py defines (errors
as http.py says). The docstrings are the operations' descriptions in the OpenAPI document."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse
from django.urls import Resolver404, resolve, reverse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt
from ninja import Status

from lfl_web.api.definition import endpoint
from lfl_web.api.http import ApiError
from lfl_web.api.inputs import (
    DEFAULT_LIMIT,
    Dataset,
    ExportFormat,
    Limit,
    Method,
    Metric,
    Model,
    NewExperiment,
    NewTransfer,
    Ranks,
    Scope,
    Sort,
)
from lfl_web.api.outputs import (
    FILE_ANSWER,
    ExperimentCreated,
    ExperimentDetail,
    ExperimentList,
    ExperimentSummary,
    Leaderboard,
    PresetList,
    TransferAccepted,
    TransferEntry,
    TransferList,
)
from lfl_web.api.payloads import (
    experiment_created,
    experiment_detail,
    experiment_summary,
    leaderboard_entry,
    transfer_entry,
)
from lfl_web.experiments import selectors, services
from lfl_web.experiments.models import DEFAULT_LEADERBOARD_SORT, Experiment
from lfl_web.experiments.results.downloads import export_file
from lfl_web.experiments.submit.form_layout import preset_config, presets
from lfl_web.experiments.submit.validation import InvalidExperiment
from lfl_web.experiments.transfers.request_checks import InvalidTransfer, TransferBusy
from search_engine.facade import EXPORT_FORMATS

#: What a 503 for an unreachable task queue suggests: the stack restarts its Redis within seconds.
QUEUE_RETRY_AFTER_SECONDS = "10"


@endpoint("GET", "/experiments/", name="experiments", answer={200: ExperimentList}, errors=(400,),
          tags=["experiments"])
def list_experiments(request, scope: Scope = "all", limit: Limit = DEFAULT_LIMIT):
    """The experiments you may see, newest first."""
    # for_list aggregates, and Django ignores Meta.ordering in GROUP BY queries: order explicitly.
    found = selectors.experiment_list(request.user, scope).order_by("-created_at", "-pk")
    return {"count": found.count(), "experiments": [experiment_summary(request, e) for e in found[:limit]]}


@endpoint("POST", "/experiments/", name="experiments", answer={201: ExperimentCreated},
          errors=(400, 413, 429, 503), tags=["experiments"])
def create_experiment(request, payload: NewExperiment, response: HttpResponse):
    """Start a search. Its configuration is checked like the web form's (nothing is stored on error);
    the answer carries the work it asks for and its address (also in the Location header). 429: you
    already have as many queued or running as the server allows; 503 (with Retry-After): the task
    queue is unreachable and nothing was saved, send it again."""
    try:
        experiment = services.create_experiment(owner=request.user, **payload.model_dump(exclude_unset=True))
    except InvalidExperiment as exc:
        raise ApiError(400, errors=exc.errors) from None
    except services.TooManyExperiments as exc:
        raise ApiError(429, str(exc)) from None
    except services.QueueUnavailable as exc:  # nothing was saved: the client may simply send it again
        raise ApiError(503, str(exc), headers={"Retry-After": QUEUE_RETRY_AFTER_SECONDS}) from None
    created = experiment_created(request, experiment)
    response["Location"] = created["urls"]["self"]
    return Status(201, created)


@endpoint("GET", "/experiments/{int:pk}/", name="experiment", answer={200: ExperimentDetail}, errors=(404,),
          tags=["experiments"])
def get_experiment(request, pk: int):
    """Where an experiment stands: its row, generations, latest candidates and learned losses."""
    return experiment_detail(request, visible_experiment(request.user, pk))


@endpoint("POST", "/experiments/{int:pk}/cancel/", name="experiment-cancel", answer={200: ExperimentSummary},
          errors=(403, 404, 409), tags=["experiments"])
def cancel_experiment(request, pk: int):
    """Ask a search to stop (a queued one stops at once), or the meta-test that follows its success
    (the search stays succeeded). Owner or staff only; 409 once both are over."""
    experiment = visible_experiment(request.user, pk)
    try:
        asked = services.cancel_experiment(experiment=experiment, user=request.user)
    except PermissionDenied as exc:
        raise ApiError(403, str(exc)) from None
    if not asked and not experiment.has_work_to_stop:  # asked already and still stopping: not an error
        raise ApiError(409, f"experiment {pk} has already finished ({experiment.status}) and is not "
                            "being meta-tested: there is nothing to stop")
    return experiment_summary(request, experiment)


@endpoint("GET", "/leaderboard/", name="leaderboard", answer={200: Leaderboard}, errors=(400,), tags=["leaderboard"])
def leaderboard(request, sort: Sort = DEFAULT_LEADERBOARD_SORT, ranks: Ranks = "best", method: Method = None,
                dataset: Dataset = "", model: Model = "", metric: Metric = "", limit: Limit = DEFAULT_LIMIT):
    """Learned losses of finished searches that you may see. `meta_test_improvement` is each loss's
    relative drop of the mean test metric, at its own best learning rate where its meta-test compared
    so (`meta_test_improvement_basis` tuned), else at the search's rate (search_rate)."""
    losses = selectors.leaderboard(request.user, sort=sort, best_only=ranks == "best", method=method or "",
                                   dataset=dataset, model=model, metric=metric)
    listed = [leaderboard_entry(request, loss) for loss in losses[:limit]]
    return {"count": losses.count(), "sort": sort, "losses": listed}


@endpoint("GET", "/losses/{int:pk}/download/{fmt}/", name="loss-download", answer={}, errors=(404, 422),
          tags=["losses"], openapi_extra={"responses": {200: FILE_ANSWER}})
def download_loss(request, pk: int, fmt: ExportFormat):
    """A learned loss as a file: torch module source, TorchScript archive, LaTeX or JSON. 422: the
    stored loss cannot be exported."""
    loss = visible_loss(request.user, pk)
    if fmt not in EXPORT_FORMATS:
        raise ApiError(404, f"unknown format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    try:
        contents, filename = export_file(loss, fmt)
    except (TypeError, ValueError) as exc:  # a stored row the exporter refuses
        raise ApiError(422, f"learned loss {pk} cannot be exported: {exc}") from None
    response = HttpResponse(contents, content_type=EXPORT_FORMATS[fmt].content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


@endpoint("GET", "/losses/{int:pk}/transfers/", name="loss-transfers", answer={200: TransferList}, errors=(404,),
          tags=["transfers"])
def list_transfers(request, pk: int):
    """A learned loss's transfers: its meta-tests on other tasks, one per target task."""
    loss = visible_loss(request.user, pk)
    return {"learned_loss": loss.pk, "transfers": [transfer_entry(request, r) for r in selectors.transfers_of(loss)]}


@endpoint("POST", "/losses/{int:pk}/transfers/", name="loss-transfers", answer={202: TransferAccepted},
          errors=(400, 404, 409, 413, 503), tags=["transfers"])
def create_transfer(request, pk: int, payload: NewTransfer, response: HttpResponse):
    """Meta-test a learned loss on another task, in a worker: 202 with the run's address to follow
    (also the Location header). 409: that task is already queued or running for this loss; a
    finished one runs again. 503 (with Retry-After): the task queue is unreachable, nothing saved."""
    loss = visible_loss(request.user, pk)
    try:
        run = services.create_transfer(user=request.user, learned_loss=loss, **payload.model_dump(exclude_none=True))
    except InvalidTransfer as exc:
        raise ApiError(400, errors=exc.errors) from None
    except TransferBusy as exc:
        raise ApiError(409, str(exc)) from None
    except services.QueueUnavailable as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": QUEUE_RETRY_AFTER_SECONDS}) from None
    url = request.build_absolute_uri(reverse("api:transfer", args=[run.pk]))
    response["Location"] = url
    return Status(202, {"id": run.pk, "status": run.status, "url": url})


@endpoint("GET", "/transfers/{int:pk}/", name="transfer", answer={200: TransferEntry}, errors=(404,),
          tags=["transfers"])
def get_transfer(request, pk: int):
    """Where a transfer stands: its status, seeds_done of seeds, and the record once it succeeded."""
    run = selectors.transfers_visible_to(request.user).filter(pk=pk).first()
    if run is None:
        raise ApiError(404, f"no transfer {pk} that you may see")
    return transfer_entry(request, run)


@endpoint("GET", "/presets/", name="presets", answer={200: PresetList}, tags=["experiments"])
def list_presets(request):
    """The configurations the new-experiment form starts from (the server's configs/*.json): each
    preset's key, what it sets up and its whole configuration, to send as is or changed."""
    return {"presets": [{"key": p.key, "label": p.summary, "config": preset_config(p.key)}
                        for p in presets().values()]}


@csrf_exempt
def not_found(request, path: str = ""):
    """Any other path under /api/: a JSON 404 (with a hint when only the trailing slash is missing)."""
    message = f"no API endpoint at {request.path}"
    if not request.path.endswith("/") and slash_would_match(request.path):
        message += f"; did you mean {request.path}/ ?"
    return JsonResponse({"error": message}, status=404)


def slash_would_match(path: str) -> bool:
    try:
        return resolve(path + "/").func is not not_found
    except Resolver404:
        return False


def visible_experiment(user, pk: int) -> Experiment:
    found = selectors.experiments_to_show(user).filter(pk=pk).first()
    if found is None:
        raise ApiError(404, f"no experiment {pk} that you may see")
    return found


def visible_loss(user, pk: int):
    loss = selectors.losses_visible_to(user).filter(pk=pk).first()
    if loss is None:
        raise ApiError(404, f"no learned loss {pk} that you may see")
    return loss
