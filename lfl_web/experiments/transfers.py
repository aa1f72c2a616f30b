"""Transfers: meta-test a learned loss on another task, asked for from a page or the API, run by a worker.

The request is checked like a new experiment's configuration (the engine's `transfer_config`, the
server's data folders, its training ceiling), stored as a TransferRun row (see models.transfer for
why one row per loss and task), and sent to the worker by name once the row is committed. The worker
claims the row, counts each finished seed on it (the progress the page and the API show) and stores
the record, or the error. The row is the record; the broker only carries its pk.
"""

from __future__ import annotations

import logging

from celery.utils import uuid
from django.conf import settings
from django.db import transaction

from lfl_web.celery import app as celery_app
from lfl_web.experiments.downloads import spec_for
from lfl_web.experiments.models import LearnedLoss, TransferRun, TransferStatus
from lfl_web.experiments.queue import BROKER_ERRORS, RETRY_POLICY, QueueUnavailable, broker_connection
from lfl_web.experiments.recording import json_ready
from lfl_web.experiments.validation import server_paths_outside_data_dirs
from search_engine.facade import (
    TUNING_RUNS_AT_MOST,
    ConfigError,
    catalog,
    leading_comparison,
    relative_improvement,
)

logger = logging.getLogger(__name__)

#: The Celery task that runs a transfer (tasks.py). Sent by name: tasks.py imports this module.
RUN_TRANSFER = "experiments.run_transfer"

#: What a request is told when the task queue did not take its transfer.
NOT_SAVED_QUEUE_DOWN = ("The task queue is not reachable right now, so the transfer was not started. "
                        "Please ask again in a moment.")

#: Configuration field -> the request field a transfer reports it under.
REQUEST_FIELDS = {"task.dataset": "dataset", "task.model": "model", "task.data_root": "data_root",
                  "meta_test.seeds": "seeds", "meta_test.steps": "steps"}

#: What a re-run resets on the row (and puts back if the queue does not take it).
_REQUEST_STATE = ("requested_by", "data_root", "seeds", "steps", "status", "seeds_done", "error",
                  "celery_task_id", "started_at", "finished_at")


class InvalidTransfer(Exception):
    """A transfer request that was not stored; `errors` maps each bad field (dataset, model, ...) to why."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


class TransferBusy(Exception):
    """The loss is already queued or running on that task; it is not asked twice."""


def target_datasets() -> tuple[str, ...]:
    """The datasets a transfer may target from the web: the server's own (an upload belongs to one experiment)."""
    return tuple(name for name in catalog.DATASET_NAMES if name not in catalog.FILE_DATASETS)


def transfer_settings(*, learned_loss: LearnedLoss, dataset, model, data_root: str = "", seeds=None, steps=None):
    """The target configuration (an ExperimentConfig), or InvalidTransfer naming each bad request field."""
    from search_engine.facade import transfer_config

    if dataset in catalog.FILE_DATASETS:
        raise InvalidTransfer({"dataset": f"choose one of {', '.join(target_datasets())}; an uploaded file "
                                          "belongs to the experiment that uploaded it"})
    outside = server_paths_outside_data_dirs({"task": {"data_root": data_root}})
    if outside:
        raise InvalidTransfer({"data_root": outside["task.data_root"]})
    try:
        config = transfer_config(learned_loss.experiment.config, dataset=dataset, model=model,
                                 data_root=data_root or None, seeds=seeds, steps=steps,
                                 loss_kind=learned_loss.experiment.task_kind)
    except ConfigError as exc:
        raise InvalidTransfer({REQUEST_FIELDS.get(k, k): v for k, v in exc.errors.items()}) from None
    _check_ceiling(config, learned_loss)
    return config


def _check_ceiling(config, learned_loss: LearnedLoss) -> None:
    """The training steps a transfer asks for (learned, baseline and, with weights, symbolic; with
    tuning, every rate tried on every tuning seed and the seeds again at the best, as
    `limits.work_estimate` counts them) within settings.LFL_MAX_TRAINING_STEPS."""
    runs = 3 if learned_loss.weights else 2
    total = config.meta_test.seeds * config.meta_test.steps * runs
    if config.meta_test.tune_lr:
        total += 2 * (TUNING_RUNS_AT_MOST + config.meta_test.seeds) * config.meta_test.steps
    ceiling = settings.LFL_MAX_TRAINING_STEPS
    if ceiling and total > ceiling:
        raise InvalidTransfer({"steps": f"asks for {total:,} training steps, more than the {ceiling:,} this "
                                        "server allows (LFL_MAX_TRAINING_STEPS); lower seeds or steps"})


def create_transfer(*, user, learned_loss: LearnedLoss, dataset, model, data_root: str = "", seeds=None,
                    steps=None) -> TransferRun:
    """Store a transfer of `learned_loss` to `dataset` / `model` and send it to a worker on commit.

    InvalidTransfer (nothing stored) names each bad field; TransferBusy when that task is already
    queued or running for this loss. A finished run on the same task is run again on its row. If the
    queue does not take it, the row is withdrawn (or put back as it was) and QueueUnavailable raised.
    """
    config = transfer_settings(learned_loss=learned_loss, dataset=dataset, model=model, data_root=data_root,
                               seeds=seeds, steps=steps)
    with transaction.atomic():
        run = TransferRun.objects.select_for_update().filter(learned_loss=learned_loss, dataset=dataset,
                                                             model=model).first()
        if run is not None and not run.is_finished:
            raise TransferBusy(f"this loss is already being tested on {dataset}/{model} ({run.status})")
        previous = None if run is None else {name: getattr(run, name) for name in _REQUEST_STATE}
        state = {"requested_by": user, "data_root": data_root or "", "seeds": config.meta_test.seeds,
                 "steps": config.meta_test.steps, "status": TransferStatus.QUEUED, "seeds_done": 0, "error": "",
                 "celery_task_id": uuid(), "started_at": None, "finished_at": None}
        if run is None:
            run = TransferRun.objects.create(learned_loss=learned_loss, dataset=dataset, model=model, **state)
        else:
            TransferRun.objects.filter(pk=run.pk).update(**state)
            run.refresh_from_db()
        transaction.on_commit(lambda: _send_or_withdraw(run, previous))
    return run


def _send_or_withdraw(run: TransferRun, previous: dict | None) -> None:
    try:
        with broker_connection() as connection:
            celery_app.send_task(RUN_TRANSFER, args=(run.pk,), task_id=run.celery_task_id, connection=connection,
                                 ignore_result=True, retry=True, retry_policy=RETRY_POLICY)
    except BROKER_ERRORS as exc:
        logger.warning("the task queue did not take transfer %s: %s", run.pk, exc)
        if previous is None:
            run.delete()
        else:
            TransferRun.objects.filter(pk=run.pk).update(**previous)
        raise QueueUnavailable(NOT_SAVED_QUEUE_DOWN) from exc


def resend_unfinished(*, broker_url: str, running_too: bool) -> list[int]:
    """Send the transfers a broker lost to it again, from their rows: the queued ones and, with
    `running_too` (the stack restarted, so no worker runs them any more), the running ones, under
    their own task ids so that the redelivered task takes them over (TransferRun.claim). Returns
    the pks sent, in order."""
    statuses = (TransferStatus.QUEUED, TransferStatus.RUNNING) if running_too else (TransferStatus.QUEUED,)
    runs = TransferRun.objects.filter(status__in=statuses).order_by("pk")
    sent = []
    with broker_connection(broker_url) as connection:
        for run in runs:
            if not run.celery_task_id:  # a run stored before task ids were kept: give it one
                run.celery_task_id = uuid()
                TransferRun.objects.filter(pk=run.pk).update(celery_task_id=run.celery_task_id)
            celery_app.send_task(RUN_TRANSFER, args=(run.pk,), task_id=run.celery_task_id, connection=connection,
                                 ignore_result=True, retry=True, retry_policy=RETRY_POLICY)
            sent.append(run.pk)
    return sent


# ----------------------------------------------------------------------------- from the worker


def run_transfer(*, transfer_id: int, task_id: str | None) -> str:
    """Run the transfer `transfer_id` for worker task `task_id`; its final status (or "missing").

    A run that is finished, or that another task runs, is left alone (a redelivered message changes
    nothing). Any exception marks the run failed with its text.
    """
    run = TransferRun.objects.select_related("learned_loss__experiment").filter(pk=transfer_id).first()
    if run is None:
        logger.warning("transfer %s no longer exists; nothing to run", transfer_id)
        return "missing"
    if not run.claim(task_id):
        return run.status
    try:
        _meta_test(run)
    except Exception as exc:
        logger.exception("transfer %s failed", transfer_id)
        run.fail(f"{type(exc).__name__}: {exc}")
    return run.status


def _meta_test(run: TransferRun) -> None:
    from search_engine.facade import transfer

    loss = run.learned_loss
    config = transfer_settings(learned_loss=loss, dataset=run.dataset, model=run.model, data_root=run.data_root,
                               seeds=run.seeds, steps=run.steps)
    record = json_ready(transfer(spec_for(loss), config, on_seed=lambda _seed: run.count_seed()))
    run.succeed(record, relative_improvement(leading_comparison(record)[0]))  # tuned where it was


# ----------------------------------------------------------------------------- for the pages


def panel_context(loss: LearnedLoss, *, for_request: bool = False, next_url: str = "") -> dict:
    """What templates/experiments/_transfers.html shows for `loss`: its runs (prefetched ones are
    used as they are), whether any is still pending, and the form's choices from the catalogue.
    `for_request`: the form carries the request's CSRF token (a page rendered for one viewer)."""
    runs = sorted(loss.transfer_runs.all(), key=lambda r: (r.dataset, r.model))
    return {
        "loss": loss, "runs": runs, "pending": any(not r.is_finished for r in runs),
        "datasets": [catalog.DATASETS[name] for name in target_datasets()], "models": catalog.MODEL_NAMES,
        "for_request": for_request,
        "next": next_url or loss.experiment.get_absolute_url(),
    }
