"""Celery tasks. A task takes only a primary key; the database row says everything else."""

from __future__ import annotations

import logging
import os
import traceback

from celery import shared_task
from django.conf import settings

from lfl_web.experiments import services
from lfl_web.experiments.broker import EVALUATE_CHUNK, RUN_EXPERIMENT, RUN_TRANSFER
from lfl_web.experiments.fanout import search_driver
from lfl_web.experiments.fanout.best_loss_meta_test import run_pending_meta_test
from lfl_web.experiments.fanout.checkpoint_file import checkpoint_path
from lfl_web.experiments.fanout.chunk_worker import drain, holder_name, run_chunk
from lfl_web.experiments.models import Experiment
from lfl_web.experiments.transfers import worker as transfer_worker

logger = logging.getLogger(__name__)


# No result is stored (ignore_result): the row is the record, and nothing waits on a task's result.
@shared_task(bind=True, name=RUN_EXPERIMENT, ignore_result=True)
def run_experiment(self, experiment_id: int) -> str:
    """Run an experiment's search and return its final status.

    A search only starts here (`search_driver.start`): its generations are evaluated as chunks by
    `evaluate_chunk`, on any worker. An exception marks it failed with the error text; a cancel
    request ends it as cancelled with everything found so far. A redelivered task resumes from the
    experiment's checkpoint, or runs the meta-test again if the worker was lost after the search had
    succeeded; a second message for a search that another task runs does nothing (claim_for_worker).
    """
    experiment = Experiment.objects.filter(pk=experiment_id).first()
    if experiment is None:
        logger.warning("experiment %s no longer exists; nothing to run", experiment_id)
        return "missing"
    resume = experiment.started_at is not None
    if not services.start_run(experiment=experiment, task_id=self.request.id):
        if experiment.cancel_requested and not experiment.is_finished:
            services.end_cancelled(experiment=experiment)
        if experiment.celery_task_id == (self.request.id or ""):  # not a meta-test another task runs
            run_pending_meta_test(experiment_id)
        return experiment.status
    try:
        search_driver.start(experiment, resume_file=checkpoint_path(experiment.pk) if resume else None)
        if settings.LFL_CHUNK_DISPATCH == "inline":
            drain()
    except Exception as exc:
        logger.exception("experiment %s failed", experiment_id)
        services.mark_failed(experiment=experiment, error=f"{type(exc).__name__}: {exc}",
                             detail=traceback.format_exc())
    return Experiment.objects.filter(pk=experiment_id).values_list("status", flat=True).first() or "missing"


# A message whose worker process died goes back to the queue under the same id, and takes the run over.
@shared_task(bind=True, name=RUN_TRANSFER, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def run_transfer(self, transfer_id: int) -> str:
    """Meta-test a learned loss on another task (a TransferRun row); returns the run's final status.
    A redelivered message for a finished run does nothing."""
    return transfer_worker.run_transfer(transfer_id=transfer_id, task_id=self.request.id)


# Late acknowledgement, and a message whose worker process died goes back to the queue; a lost
# message is sent again by the coordinator when the chunk's lease runs out (fanout.coordinator).
@shared_task(bind=True, name=EVALUATE_CHUNK, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def evaluate_chunk(self, chunk_id: int) -> str:
    """Evaluate one chunk of a search and move the search on (chunk_worker.run_chunk)."""
    return run_chunk(chunk_id, worker=holder_name(self.request.hostname or "worker", os.getpid()))
