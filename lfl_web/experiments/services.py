"""Every change to an experiment's state that someone must hear about: the change, then its news.

Pages, the API, the admin, the Celery task and the stack call these keyword-only functions; each
changes the database (through the model's state transitions) and then tells the experiment's
watchers, so no caller pairs the two by hand. Reads stay in the models' querysets.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from lfl_web.celery import app as celery_app
from lfl_web.experiments.files import checkpoint_path, remove_upload, store_upload
from lfl_web.experiments.models import Experiment, Status
from lfl_web.experiments.recording import broadcast_status, publish
from lfl_web.experiments.validation import InvalidExperiment, errors_by_field

#: The Celery task that runs a search (tasks.py). Sent by name: tasks.py imports this module.
RUN_EXPERIMENT = "experiments.run_experiment"


# ----------------------------------------------------------------------------- from pages, API and admin


def create_experiment(*, owner, name: str, config, description: str = "", private: bool = False,
                      upload=None) -> Experiment:
    """Store a new experiment and send it to a worker once the transaction commits.

    `upload` (an UploadedFile for dataset csv or npz) is kept under a generated name and becomes
    `task.data_file`. Raises InvalidExperiment (nothing stored, the upload neither) naming each
    bad field: "name", or a dotted configuration field such as "search.crossover_rate".
    """
    stored = store_upload(upload) if upload is not None else None
    if stored is not None:
        config = _with_data_file(config, stored)
    try:
        experiment = Experiment.objects.create_validated(
            owner=owner, name=name, config=config, description=description, private=private)
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
    (a worker that got it earlier would not find the row)."""
    pk = experiment.pk
    transaction.on_commit(lambda: celery_app.send_task(RUN_EXPERIMENT, args=(pk,)))


def cancel_experiment(*, experiment: Experiment, user) -> bool:
    """Ask the search to stop (a queued one is cancelled at once) and tell its watchers.

    False if there was nothing to ask (finished, or asked already); PermissionDenied unless `user`
    is the owner or staff.
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
    again, and a search that was asked to stop ends cancelled. Returns the pks sent, in order."""
    for experiment in Experiment.objects.asked_to_stop():
        end_cancelled(experiment=experiment)
    pks = Experiment.objects.reset_unfinished()
    pks += list(Experiment.objects.waiting_for_meta_test().order_by("pk").values_list("pk", flat=True))
    with celery_app.connection_for_write(broker_url) as connection:
        for pk in pks:
            celery_app.send_task(RUN_EXPERIMENT, args=(pk,), connection=connection, ignore_result=True)
    return pks


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


def mark_failed(*, experiment: Experiment, error: str) -> None:
    """Record that the search failed with `error` (shown on its page) and say so."""
    if experiment.mark_failed(error):
        broadcast_status(experiment.pk)


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
