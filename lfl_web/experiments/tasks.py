"""Celery tasks. A task takes only a primary key; the database row says everything else."""

from __future__ import annotations

import logging

from celery import current_app, shared_task

from lfl_web.experiments.models import Experiment, Status
from lfl_web.experiments.recording import broadcast_status
from lfl_web.experiments.runner import execute_search, run_pending_meta_test

logger = logging.getLogger(__name__)


@shared_task(bind=True, name="experiments.run_experiment")
def run_experiment(self, experiment_id: int) -> str:
    """Run an experiment's search and return its final status.

    An exception marks it failed with the error text; a cancel request ends it as cancelled with
    everything found so far. A redelivered task resumes from the experiment's checkpoint, or runs
    the meta-test again if the worker was lost after the search had succeeded.
    """
    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None:
        logger.warning("experiment %s no longer exists; nothing to run", experiment_id)
        return "missing"
    resume = experiment.started_at is not None
    if not experiment.claim_for_worker(self.request.id):
        if experiment.cancel_requested and not experiment.is_finished:
            experiment.mark_finished(Status.CANCELLED)
        run_pending_meta_test(experiment_id)
        return experiment.status
    broadcast_status(experiment_id)
    try:
        execute_search(experiment, resume=resume)
    except Exception as exc:
        logger.exception("experiment %s failed", experiment_id)
        experiment.mark_failed(f"{type(exc).__name__}: {exc}")
        broadcast_status(experiment_id)
    return Experiment.objects.filter(pk=experiment_id).values_list("status", flat=True).first() or "missing"


def requeue_unfinished(broker_url: str) -> list[int]:
    """Send the experiments a stopped stack left queued, running or meta-testing to the worker again
    (searches resume from their checkpoints); for a broker that kept nothing, such as the embedded Redis."""
    pks = Experiment.objects.reset_unfinished()
    pks += list(Experiment.objects.waiting_for_meta_test().order_by("pk").values_list("pk", flat=True))
    with current_app.connection_for_write(broker_url) as connection:
        for pk in pks:
            run_experiment.apply_async((pk,), connection=connection, ignore_result=True)
    return pks
