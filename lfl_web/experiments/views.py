"""Pages: the experiments list, the new-experiment form, the live dashboard, the leaderboard and
downloads of learned losses. Every page needs a signed-in user; what they may see comes from
`selectors`, what they may change from `can_be_managed_by`; every change goes through `services`."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header, url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from lfl_web.experiments import selectors
from lfl_web.experiments.models import Experiment
from lfl_web.experiments.results.dashboard import (
    chart_series,
    panels_context,
    render_panels,
    snapshot_message,
)
from lfl_web.experiments.results.downloads import DOWNLOAD_FORMATS, export_file
from lfl_web.experiments.results.leaderboard import LEADERBOARD_SORTS, LeaderboardFilterForm, tested_on_choice
from lfl_web.experiments.services import (
    QueueUnavailable,
    TooManyExperiments,
    cancel_experiment,
    create_experiment,
    create_transfer,
    delete_experiment,
)
from lfl_web.experiments.submit.experiment_form import ExperimentForm
from lfl_web.experiments.submit.form_layout import initial_values, presets
from lfl_web.experiments.submit.validation import InvalidExperiment
from lfl_web.experiments.submit.work_estimate import estimate_context
from lfl_web.experiments.transfers.panel import panel_context
from lfl_web.experiments.transfers.request_checks import InvalidTransfer, TransferBusy, target_datasets
from search_engine.facade import catalog

SCOPES = ("all", "mine")
#: The most rows the experiments list and the leaderboard show.
PAGE_ROWS = 200


@login_required
def experiment_list(request):
    scope = request.GET.get("scope") or "all"
    if scope not in SCOPES:
        messages.warning(request, f"Unknown scope {scope!r}; showing all experiments (use 'mine' or 'all').")
        scope = "all"
    experiments = selectors.experiment_list(request.user, scope)[:PAGE_ROWS]
    return render(request, "experiments/list.html", {"experiments": experiments, "scope": scope})


home = experiment_list


@login_required
def experiment_new(request):
    preset, offered = request.GET.get("preset") or None, presets()
    if preset is not None and preset not in offered:
        messages.error(request, f"Unknown preset {preset!r}; known presets: {', '.join(offered)}.")
        preset = None
    data = (request.POST, request.FILES) if request.method == "POST" else (None, None)
    form = ExperimentForm(*data, initial=initial_values(preset))
    status = 200
    if form.is_bound and form.is_valid():
        try:
            experiment = create_experiment(owner=request.user, **form.experiment_fields())
        except InvalidExperiment as exc:
            form.add_experiment_errors(exc.errors)
        except TooManyExperiments as exc:
            form.add_error(None, str(exc))
        except QueueUnavailable as exc:  # nothing was saved; the form keeps what was typed
            form.add_error(None, str(exc))
            status = 503
        else:
            # the dashboard removes this notice once the live status is no longer "queued"
            messages.success(request, f"“{experiment.name}” is queued; this page follows it live.",
                             extra_tags="queued-notice")
            return redirect(experiment)
    return render(request, "experiments/new.html", {"form": form, "presets": offered, "preset_key": preset,
                                                    **estimate_context(form)}, status=status)


@login_required
@require_POST
def experiment_estimate(request):
    """The new-experiment form's work-estimate panel for the values it posts (its script sends them)."""
    return render(request, "experiments/_estimate.html", estimate_context(ExperimentForm(request.POST)))


@login_required
def experiment_detail(request, pk):
    experiment = get_object_or_404(selectors.experiments_to_show(request.user), pk=pk)
    return render(request, "experiments/detail.html", {
        **panels_context(experiment), "chart": chart_series(experiment),
        "can_manage": experiment.can_be_managed_by(request.user), "ws_path": f"/ws/experiments/{experiment.pk}/",
        "config_json": json.dumps(experiment.config, indent=2, sort_keys=True),
    })


@login_required
def experiment_results(request, pk):
    """Where the dashboard stands, as the socket's snapshot: every panel's HTML (panel id -> fragment)
    and the chart's data."""
    experiment = get_object_or_404(selectors.experiments_to_show(request.user), pk=pk)
    return JsonResponse(snapshot_message(experiment))


@login_required
@never_cache
def experiment_workers(request, pk):
    """The workers panel's fragment alone: the dashboard fetches it again while the search runs (a
    worker taking a chunk sends no event)."""
    return panel_fragment(request, pk, "workers-panel")


@login_required
@never_cache
def experiment_progress(request, pk):
    """The progress panel's fragment alone, fetched again while a fanned-out search runs: its ETA
    says when the chunks wait for a worker, which no event tells."""
    return panel_fragment(request, pk, "progress-panel")


def panel_fragment(request, pk, panel_id: str) -> HttpResponse:
    """One dashboard panel's HTML, for a user who may see the experiment (404 otherwise)."""
    experiment = get_object_or_404(selectors.experiments_visible_to(request.user), pk=pk)
    return HttpResponse(render_panels(experiment, (panel_id,))[panel_id])


@login_required
@require_POST
def experiment_cancel(request, pk):
    experiment = managed_experiment(request, pk)
    if cancel_experiment(experiment=experiment, user=request.user):
        if experiment.is_meta_testing:
            messages.success(request, "Asked the meta-test to stop; the search's losses stay as they are.")
        else:
            messages.success(request, "Asked the search to stop; it keeps what it has found so far.")
    else:
        messages.info(request, "This search has already finished; there is nothing to stop.")
    return redirect(experiment)


@login_required
@require_POST
def experiment_delete(request, pk):
    experiment = managed_experiment(request, pk)
    name = experiment.name
    try:
        delete_experiment(experiment=experiment, user=request.user)
    except ValidationError as exc:  # still queued or running
        messages.error(request, " ".join(exc.messages))
        return redirect(experiment)
    messages.success(request, f"Deleted “{name}” and everything it found.")
    return redirect("experiment_list")


@login_required
def leaderboard(request):
    filters = LeaderboardFilterForm(request.GET, datasets=selectors.leaderboard_datasets(request.user))
    choices, tested = filters.choices(), tested_on_choice(request)
    rows = selectors.leaderboard(request.user, **choices, tested_on=tested).prefetch_related("transfer_runs")
    return render(request, "leaderboard.html", {
        "rows": rows[:PAGE_ROWS], "filters": filters, "choices": choices,
        "formats": DOWNLOAD_FORMATS.values(), "sorts": LEADERBOARD_SORTS, "tested": tested,
        "tested_datasets": target_datasets(), "tested_models": catalog.model_names(),
    })


@login_required
@require_http_methods(["GET", "POST"])
def loss_transfers(request, pk):
    """GET: the loss's transfer list (the fragment static/js/transfer.js refreshes). POST: meta-test
    the loss on another task in a worker, then back to the page that asked."""
    loss = get_object_or_404(selectors.losses_visible_to(request.user), pk=pk)
    if request.method == "GET":
        return render(request, "experiments/_transfer_list.html", panel_context(loss))
    dataset, model = request.POST.get("dataset", ""), request.POST.get("model", "")
    try:
        create_transfer(user=request.user, learned_loss=loss, dataset=dataset, model=model,
                        data_root=request.POST.get("data_root", "").strip())
    except InvalidTransfer as exc:
        messages.error(request, "Could not start the transfer: " + "; ".join(f"{k}: {v}" for k, v in exc.errors.items()))
    except (TransferBusy, QueueUnavailable) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Meta-testing loss #{loss.rank} on {dataset} / {model}; the result appears under it.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = loss.experiment.get_absolute_url()
    return redirect(target)


@login_required
def download_loss(request, pk, fmt):
    if fmt not in DOWNLOAD_FORMATS:
        raise Http404(f"unknown format {fmt!r}")
    loss = get_object_or_404(selectors.losses_visible_to(request.user), pk=pk)
    try:
        data, filename = export_file(loss, fmt)
    except ValueError as exc:  # a row the engine cannot read back: say so instead of a 500
        messages.error(request, f"Could not export loss #{loss.rank}: {exc}")
        return redirect(loss.experiment)
    response = HttpResponse(data, content_type=DOWNLOAD_FORMATS[fmt].content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


# ----------------------------------------------------------------------------- helpers


def managed_experiment(request, pk) -> Experiment:
    """The experiment if the user may change it: 404 when they cannot see it, 403 when not theirs
    (the services refuse them too; checking first keeps a 404 for what they may not see)."""
    experiment = get_object_or_404(selectors.experiments_visible_to(request.user), pk=pk)
    if not experiment.can_be_managed_by(request.user):
        raise PermissionDenied("Only the owner or staff can change this experiment.")
    return experiment
