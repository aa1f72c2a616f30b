"""Every write a page, the API, the admin, a worker or the stack asks for: the change, then its news.

Callers use these keyword-only functions; each changes the database (through the models' state
transitions), then tells the experiment's watchers, or hands the work to the broker once the row
is committed, so no caller pairs the two by hand. Reads a page names are in `selectors`. The rows
of work in progress (a search's stored state, chunks and events, a transfer's progress) are kept
by `fanout`, `live.recording` and `transfers.worker` through the models' state transitions.
"""

from __future__ import annotations

import logging

from celery.utils import uuid
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from lfl_web.experiments.broker import RUN_EXPERIMENT, RUN_TRANSFER, QueueUnavailable, broker_connection, send
from lfl_web.experiments.fanout.checkpoint_file import checkpoint_path
from lfl_web.experiments.live.recording import broadcast_status, publish
from lfl_web.experiments.models import (
    Experiment,
    LearnedLoss,
    MetaTestStatus,
    Status,
    TransferRun,
    TransferStatus,
)
from lfl_web.experiments.results.task_facts import data_name
from lfl_web.experiments.submit.uploads import remove_upload, store_upload
from lfl_web.experiments.submit.validation import InvalidExperiment, errors_by_field
from lfl_web.experiments.transfers.request_checks import TransferBusy, transfer_settings

__all__ = ["QueueUnavailable"]  # what the functions below raise when the broker does not take the work

logger = logging.getLogger(__name__)

#: What a submit is told when the task queue did not take its search (see send_to_worker).
NOT_SAVED_QUEUE_DOWN = ("The task queue is not reachable right now, so the experiment was not saved. "
                        "Please submit it again in a moment.")
#: What a request is told when the task queue did not take its transfer.
TRANSFER_NOT_SAVED_QUEUE_DOWN = ("The task queue is not reachable right now, so the transfer was not started. "
                                 "Please ask again in a moment.")
#: What a transfer's re-run resets on its row (and puts back if the queue does not take it).
_TRANSFER_REQUEST_STATE = ("requested_by", "data_root", "seeds", "steps", "status", "seeds_done", "error",
                           "celery_task_id", "started_at", "finished_at")


# ----------------------------------------------------------------------------- from pages, API and admin


class TooManyExperiments(Exception):
    """The owner already has settings.LFL_MAX_QUEUED_PER_USER experiments queued or running."""


def create_experiment(*, owner, name: str, config, description: str = "", private: bool = False,
                      upload=None) -> Experiment:
    """Store a new experiment and send it to a worker once the transaction commits.

    `upload` (an UploadedFile for dataset csv or npz) is kept under a generated name and becomes
    `task.data_file`; its own name is what the pages call the data set. Raises InvalidExperiment (nothing stored, the upload neither) naming each
    bad field: "name", or a dotted configuration field such as "search.crossover_rate"; and
    TooManyExperiments (nothing stored) when the owner has no room left in the queue.
    """
    with transaction.atomic():
        check_room_in_queue(owner=owner)
        return _create(owner=owner, name=name, config=config, description=description, private=private,
                       upload=upload)


def check_room_in_queue(*, owner) -> None:
    """TooManyExperiments if `owner` (staff too) already has LFL_MAX_QUEUED_PER_USER experiments
    queued or running (0: no limit). Locks the owner's row, so two requests cannot both take the
    last place (on databases with row locks; SQLite writes one transaction at a time anyway)."""
    limit = settings.LFL_MAX_QUEUED_PER_USER
    if not limit:
        return
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    waiting = Experiment.objects.filter(owner=owner).unfinished().count()
    if waiting >= limit:
        raise TooManyExperiments(
            f"You have {waiting} experiments queued or running, the most one user may have at once on this "
            f"server (LFL_MAX_QUEUED_PER_USER = {limit}); wait until one finishes, or cancel one.")


def _create(*, owner, name, config, description, private, upload) -> Experiment:
    stored = store_upload(upload) if upload is not None else None
    if stored is not None:
        config = _with_data_file(config, stored)
    try:
        experiment = Experiment.objects.create_validated(
            owner=owner, name=name, config=config, description=description, private=private,
            data_name=data_name(upload.name) if upload is not None else "")
    except ValidationError as exc:
        remove_upload(stored)
        errors = errors_by_field(exc)
        if stored is not None:  # name the user's file, not where the server keeps it
            errors = {field: text.replace(str(stored), upload.name) for field, text in errors.items()}
        raise InvalidExperiment(errors) from None
    except BaseException:
        remove_upload(stored)
        raise
    send_to_worker(experiment=experiment)
    return experiment


def _with_data_file(config, path) -> dict:
    """A copy of `config` that reads its data from the server file `path`."""
    config = dict(config) if isinstance(config, dict) else {}
    task = config.get("task")
    config["task"] = {**(task if isinstance(task, dict) else {}), "data_file": str(path)}
    return config


def send_to_worker(*, experiment: Experiment) -> None:
    """Queue the experiment's search for a worker once the surrounding transaction has committed
    (a worker that got it earlier would not find the row).

    If the queue does not take it within a few seconds, the experiment is removed again and
    QueueUnavailable (NOT_SAVED_QUEUE_DOWN) raised: no request hangs, and nothing stays stored that
    no worker would run (a restarted broker is sent only what it lost, see requeue_queued).
    """
    transaction.on_commit(lambda: _send_or_withdraw(experiment))


def _send_or_withdraw(experiment: Experiment) -> None:
    try:
        with broker_connection() as connection:
            send(RUN_EXPERIMENT, experiment.pk, connection=connection)
    except QueueUnavailable as exc:
        logger.warning("%s; the experiment was withdrawn", exc)
        remove_experiment(experiment=experiment)
        raise QueueUnavailable(NOT_SAVED_QUEUE_DOWN) from exc


def cancel_experiment(*, experiment: Experiment, user) -> bool:
    """Ask the search to stop (a queued one is cancelled at once), or the meta-test that follows its
    success (the search stays succeeded), and tell its watchers.

    False if there was nothing to ask (finished and meta-tested, or asked already); PermissionDenied
    unless `user` is the owner or staff.
    """
    if not experiment.can_be_managed_by(user):
        raise PermissionDenied("only the experiment's owner (or staff) may cancel it")
    asked = experiment.request_cancel()
    if asked:
        broadcast_status(experiment.pk)
    return asked


def delete_experiment(*, experiment: Experiment, user) -> None:
    """Delete a finished experiment, its rows, its checkpoint and its uploaded data file.

    PermissionDenied unless `user` is the owner or staff; ValidationError while the search is
    queued or running (a worker would still be writing to it).
    """
    if not experiment.can_be_managed_by(user):
        raise PermissionDenied("only the experiment's owner (or staff) may delete it")
    if not experiment.is_finished:
        raise ValidationError("This search is still queued or running: stop it first, then delete it.")
    remove_experiment(experiment=experiment)


def remove_experiment(*, experiment: Experiment) -> None:
    """The experiment's rows, checkpoint and uploaded data file, gone; no questions asked (the admin's
    own permissions guard it there; a worker still running it stops when its row is gone)."""
    task = experiment.config.get("task") if isinstance(experiment.config, dict) else None
    data_file, pk = (task or {}).get("data_file") if isinstance(task, dict) else None, experiment.pk
    experiment.delete()
    remove_upload(data_file)
    checkpoint_path(pk).unlink(missing_ok=True)


def requeue_unfinished(*, broker_url: str) -> list[int]:
    """Send what a stopped stack left unfinished to the worker again, through a broker that kept
    nothing (such as the embedded Redis): searches resume from their checkpoints, meta-tests run
    again, and a search or a meta-test that was asked to stop ends cancelled (the meta-test's search
    stays succeeded). Returns the pks sent, in order."""
    for experiment in Experiment.objects.asked_to_stop():
        end_cancelled(experiment=experiment)
    for experiment in Experiment.objects.meta_tests_asked_to_stop():
        stop_meta_test(experiment=experiment)
    pks = Experiment.objects.reset_unfinished()
    meta_tests = list(Experiment.objects.waiting_for_meta_test().order_by("pk").values_list("pk", flat=True))
    with broker_connection(broker_url) as connection:
        for pk in pks:
            send(RUN_EXPERIMENT, pk, connection=connection)
        for pk in meta_tests:
            publish_meta_test(pk, connection=connection)
    return pks + meta_tests


def publish_meta_test(pk: int, *, connection) -> None:
    """Hand the meta-test of succeeded experiment `pk` to a new task (see tasks.run_experiment): its
    id goes on the row before a worker can get the message. Raises QueueUnavailable."""
    task_id = uuid()
    Experiment.objects.filter(pk=pk, status=Status.SUCCEEDED, meta_test_status=MetaTestStatus.RUNNING
                              ).update(celery_task_id=task_id)
    send(RUN_EXPERIMENT, pk, connection=connection, task_id=task_id)


def requeue_queued(*, broker_url: str) -> list[int]:
    """Send the queued searches again after the broker restarted empty while the worker kept running
    (the stack restarts its embedded Redis when it dies). Running searches and meta-tests are left to
    the worker that runs them; a second message for one would be refused (claim_for_worker). Returns
    the pks sent, in order."""
    pks = list(Experiment.objects.filter(status=Status.QUEUED).order_by("pk").values_list("pk", flat=True))
    with broker_connection(broker_url) as connection:
        for pk in pks:
            send(RUN_EXPERIMENT, pk, connection=connection)
    return pks


# ----------------------------------------------------------------------------- transfers


def create_transfer(*, user, learned_loss: LearnedLoss, dataset, model, data_root: str = "", seeds=None,
                    steps=None) -> TransferRun:
    """Store a transfer of `learned_loss` to `dataset` / `model` and send it to a worker on commit.

    InvalidTransfer (nothing stored) names each bad field; TransferBusy when that task is already
    queued or running for this loss. A finished run on the same task is run again on its row (one
    row per loss and task, see models.transfer_run). If the queue does not take it, the row is
    withdrawn (or put back as it was) and QueueUnavailable raised.
    """
    config = transfer_settings(learned_loss=learned_loss, dataset=dataset, model=model, data_root=data_root,
                               seeds=seeds, steps=steps)
    with transaction.atomic():
        run = TransferRun.objects.select_for_update().filter(learned_loss=learned_loss, dataset=dataset,
                                                             model=model).first()
        if run is not None and not run.is_finished:
            raise TransferBusy(f"this loss is already being tested on {dataset}/{model} ({run.status})")
        previous = None if run is None else {name: getattr(run, name) for name in _TRANSFER_REQUEST_STATE}
        state = {"requested_by": user, "data_root": data_root or "", "seeds": config.meta_test.seeds,
                 "steps": config.meta_test.steps, "status": TransferStatus.QUEUED, "seeds_done": 0, "error": "",
                 "celery_task_id": uuid(), "started_at": None, "finished_at": None}
        if run is None:
            run = TransferRun.objects.create(learned_loss=learned_loss, dataset=dataset, model=model, **state)
        else:
            TransferRun.objects.filter(pk=run.pk).update(**state)
            run.refresh_from_db()
        transaction.on_commit(lambda: _send_transfer_or_withdraw(run, previous))
    return run


def _send_transfer_or_withdraw(run: TransferRun, previous: dict | None) -> None:
    try:
        with broker_connection() as connection:
            send(RUN_TRANSFER, run.pk, connection=connection, task_id=run.celery_task_id)
    except QueueUnavailable as exc:
        logger.warning("%s; the transfer was withdrawn", exc)
        if previous is None:
            run.delete()
        else:
            TransferRun.objects.filter(pk=run.pk).update(**previous)
        raise QueueUnavailable(TRANSFER_NOT_SAVED_QUEUE_DOWN) from exc


def resend_unfinished_transfers(*, broker_url: str, running_too: bool) -> list[int]:
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
            send(RUN_TRANSFER, run.pk, connection=connection, task_id=run.celery_task_id)
            sent.append(run.pk)
    return sent


# ----------------------------------------------------------------------------- from the worker


def start_run(*, experiment: Experiment, task_id: str | None) -> bool:
    """Mark the search running for the worker task `task_id` and say so; False (nothing changed)
    if it is finished or being cancelled."""
    claimed = experiment.claim_for_worker(task_id)
    if claimed:
        broadcast_status(experiment.pk)
    return claimed


def end_cancelled(*, experiment: Experiment) -> None:
    """End a search that was asked to stop before a worker could (it keeps what it found)."""
    if experiment.mark_finished(Status.CANCELLED):
        broadcast_status(experiment.pk)


def mark_failed(*, experiment: Experiment, error: str, detail: str = "") -> None:
    """Record that the search failed with `error` (shown on its page; `detail`, its traceback, to
    staff) and say so."""
    if experiment.mark_failed(error, detail):
        broadcast_status(experiment.pk)


def start_meta_test(*, experiment: Experiment) -> None:
    """Record that the meta-test of the search's best losses has begun (its seeds counted from 0)."""
    experiment.start_meta_test()


def enter_meta_test_phase(*, experiment: Experiment, phase: str, seeds: int) -> None:
    """The meta-test has begun `phase` (`Experiment.meta_test_phase`): record it and tell the watchers."""
    experiment.enter_meta_test_phase(phase)
    publish(experiment.pk, {"type": "meta_test_progress", "phase": phase, "seeds_done": 0, "seeds": seeds})


def count_meta_test_seed(*, experiment: Experiment, seeds: int) -> None:
    """One more meta-test seed is done (of `seeds`): count it and tell the watchers."""
    experiment.count_meta_test_seed()
    publish(experiment.pk, {"type": "meta_test_progress", "seeds_done": experiment.meta_test_seeds_done,
                            "seeds": seeds})


def finish_meta_test(*, experiment: Experiment, learned_loss, record: dict) -> None:
    """Store the meta-test `record` of the best `learned_loss` and send the numbers to the watchers."""
    experiment.finish_meta_test(record)
    publish(experiment.pk, {"type": "meta_test_finished", "learned_loss": learned_loss.pk, "meta_test": record})


def fail_meta_test(*, experiment: Experiment, error: str) -> None:
    """Record why the meta-test failed (the search itself stays succeeded) and say so."""
    experiment.mark_meta_test_failed(error)
    broadcast_status(experiment.pk)


def stop_meta_test(*, experiment: Experiment) -> None:
    """Record that the running meta-test was stopped by request (the search stays succeeded, its
    losses downloadable) and say so; nothing if none was running."""
    if experiment.mark_meta_test_stopped():
        broadcast_status(experiment.pk)
