"""The JSON API. Every endpoint needs a token (see auth.py); each view parses its input, calls a
query or a service named for its use, and answers JSON (errors too, see http.py)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse
from django.urls import Resolver404, resolve, reverse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt

from lfl_web.api.http import ApiError, api_endpoint, choice_param, int_param, read_json_object, with_header
from lfl_web.api.payloads import (
    experiment_created,
    experiment_detail,
    experiment_fields,
    experiment_summary,
    leaderboard_entry,
    transfer_entry,
    transfer_fields,
)
from lfl_web.experiments import selectors, services
from lfl_web.experiments.models import DEFAULT_LEADERBOARD_SORT, LEADERBOARD_ORDERINGS, Experiment
from lfl_web.experiments.results.downloads import export_file
from lfl_web.experiments.submit.validation import InvalidExperiment
from lfl_web.experiments.transfers.request_checks import InvalidTransfer, TransferBusy
from search_engine.facade import EXPORT_FORMATS, METHODS

MAX_LIMIT = 1000
EXPERIMENT_SCOPES = ("all", "mine")
LEADERBOARD_FILTERS = ("method", "dataset", "model", "metric")
#: What a 503 for an unreachable task queue suggests: the stack restarts its Redis within seconds.
QUEUE_RETRY_AFTER_SECONDS = "10"


@api_endpoint("GET", "POST")
def experiments(request):
    """GET: the experiments the user may see (?scope=all|mine, ?limit=N). POST: start one."""
    if request.method == "POST":
        return create_experiment(request)
    scope = choice_param(request, "scope", EXPERIMENT_SCOPES, "all")
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    # for_list aggregates, and Django ignores Meta.ordering in GROUP BY queries: order explicitly.
    found = selectors.experiment_list(request.user, scope).order_by("-created_at", "-pk")
    listed = [experiment_summary(request, e) for e in found[:limit]]
    return JsonResponse({"count": found.count(), "experiments": listed})


def create_experiment(request):
    """Validate like the web form (nothing stored on error), save, then send it to a worker; 429 when
    the user already has as many queued or running as the server allows; 503 (nothing saved, with
    Retry-After) when the task queue does not take it."""
    fields = experiment_fields(read_json_object(request))
    try:
        experiment = services.create_experiment(owner=request.user, **fields)
    except InvalidExperiment as exc:
        raise ApiError(400, errors=exc.errors) from None
    except services.TooManyExperiments as exc:
        raise ApiError(429, str(exc)) from None
    except services.QueueUnavailable as exc:  # nothing was saved: the client may simply send it again
        return with_header(ApiError(503, str(exc)).response(), "Retry-After", QUEUE_RETRY_AFTER_SECONDS)
    payload = experiment_created(request, experiment)
    response = JsonResponse(payload, status=201)
    response["Location"] = payload["urls"]["self"]
    return response


@api_endpoint("GET")
def experiment(request, pk: int):
    """Where the experiment stands: its row, generations, latest candidates and learned losses."""
    return JsonResponse(experiment_detail(request, visible_experiment(request.user, pk)))


@api_endpoint("POST")
def cancel_experiment(request, pk: int):
    """Ask a search to stop (a queued one stops at once), or the meta-test that follows its success
    (the search stays succeeded): owner or staff only; 409 once both are over."""
    experiment = visible_experiment(request.user, pk)
    try:
        asked = services.cancel_experiment(experiment=experiment, user=request.user)
    except PermissionDenied as exc:
        raise ApiError(403, str(exc)) from None
    if not asked and not experiment.has_work_to_stop:  # asked already and still stopping: not an error
        raise ApiError(409, f"experiment {pk} has already finished ({experiment.status}) and is not "
                            "being meta-tested: there is nothing to stop")
    return JsonResponse(experiment_summary(request, experiment))


@api_endpoint("GET")
def leaderboard(request):
    """Learned losses of finished searches, each experiment's best unless ?ranks=all
    (?method= one of the catalogue's methods, ?dataset= &model= &metric= exact filters,
    ?sort=meta_test|fitness|improvement|date, ?limit=N). The default order is the page's: losses
    with a held-out meta-test first, by `meta_test_improvement` (each loss at its own best learning
    rate where its meta-test compared so, see `payloads.leaderboard_entry`), then the others by
    validation fitness."""
    sort = choice_param(request, "sort", LEADERBOARD_ORDERINGS, DEFAULT_LEADERBOARD_SORT)
    best_only = choice_param(request, "ranks", ("best", "all"), "best") == "best"
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    filters = {name: request.GET.get(name, "") for name in LEADERBOARD_FILTERS}
    if filters["method"]:
        choice_param(request, "method", METHODS, "")
    losses = selectors.leaderboard(request.user, sort=sort, best_only=best_only, **filters)
    listed = [leaderboard_entry(request, loss) for loss in losses[:limit]]
    return JsonResponse({"count": losses.count(), "sort": sort, "losses": listed})


@api_endpoint("GET")
def download_loss(request, pk: int, fmt: str):
    """A learned loss as a file: torch module source, TorchScript archive, LaTeX or JSON."""
    loss = selectors.losses_visible_to(request.user).filter(pk=pk).first()
    if loss is None:
        raise ApiError(404, f"no learned loss {pk} that you may see")
    if fmt not in EXPORT_FORMATS:
        raise ApiError(404, f"unknown format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    try:
        contents, filename = export_file(loss, fmt)
    except (TypeError, ValueError) as exc:  # a stored row the exporter refuses
        raise ApiError(422, f"learned loss {pk} cannot be exported: {exc}") from None
    response = HttpResponse(contents, content_type=EXPORT_FORMATS[fmt].content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


@api_endpoint("GET", "POST")
def loss_transfers(request, pk: int):
    """GET: the loss's transfers (one per target task). POST {"dataset", "model", optional "data_root",
    "seeds", "steps"}: meta-test it on that task in a worker; 202 with the run's address to follow."""
    loss = selectors.losses_visible_to(request.user).filter(pk=pk).first()
    if loss is None:
        raise ApiError(404, f"no learned loss {pk} that you may see")
    if request.method == "GET":
        runs = selectors.transfers_of(loss)
        return JsonResponse({"learned_loss": loss.pk, "transfers": [transfer_entry(request, r) for r in runs]})
    fields = transfer_fields(read_json_object(request))
    try:
        run = services.create_transfer(user=request.user, learned_loss=loss, **fields)
    except InvalidTransfer as exc:
        raise ApiError(400, errors=exc.errors) from None
    except TransferBusy as exc:
        raise ApiError(409, str(exc)) from None
    except services.QueueUnavailable as exc:
        return with_header(ApiError(503, str(exc)).response(), "Retry-After", QUEUE_RETRY_AFTER_SECONDS)
    url = request.build_absolute_uri(reverse("api:transfer", args=[run.pk]))
    response = JsonResponse({"id": run.pk, "status": run.status, "url": url}, status=202)
    response["Location"] = url
    return response


@api_endpoint("GET")
def transfer(request, pk: int):
    """Where a transfer stands: its status, seeds_done of seeds, and the record once it succeeded."""
    run = selectors.transfers_visible_to(request.user).filter(pk=pk).first()
    if run is None:
        raise ApiError(404, f"no transfer {pk} that you may see")
    return JsonResponse(transfer_entry(request, run))


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
