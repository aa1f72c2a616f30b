"""Running one experiment's search inside a worker: the glue between the row and `run_search`.

Imports torch (through search_engine) only when a search runs, so a Celery parent process that
merely imports the tasks never touches CUDA.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from django.conf import settings

from lfl_web.experiments.models import Experiment, LearnedLoss
from lfl_web.experiments.recording import json_ready, publish, record_event

logger = logging.getLogger(__name__)


class CancelPoll:
    """`should_stop` for run_search: True once the experiment's cancel flag is set (or the row is gone).

    The search asks between every evaluation; the database is read at most once per `interval`
    seconds, and the answer stays True once it has become True.
    """

    def __init__(self, experiment_id: int, interval: float, clock: Callable[[], float] = time.monotonic):
        self.experiment_id = experiment_id
        self.interval = interval
        self.clock = clock
        self.checked_at = -float("inf")
        self.stop = False

    def __call__(self) -> bool:
        now = self.clock()
        if not self.stop and now - self.checked_at >= self.interval:
            self.checked_at = now
            self.stop = not Experiment.objects.filter(pk=self.experiment_id, cancel_requested=False).exists()
        return self.stop


def checkpoint_path(experiment_id: int) -> Path:
    return Path(settings.LFL_CHECKPOINT_DIR) / f"experiment_{experiment_id}.json"


def execute_search(experiment: Experiment, *, resume: bool) -> str:
    """Run the experiment's search, recording every event; returns run_search's status.

    With `resume`, a checkpoint left by an interrupted run of this experiment is continued;
    otherwise a stale file of that name (from an earlier database) is removed first.
    """
    from search_engine.config import load_config
    from search_engine.search import run_search

    config = load_config(experiment.config, check_data=True)
    path = checkpoint_path(experiment.pk)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        path.unlink(missing_ok=True)
    result = run_search(
        config, on_event=partial(record_event, experiment.pk),
        should_stop=CancelPoll(experiment.pk, settings.LFL_CANCEL_POLL_SECONDS),
        checkpoint_path=path, resume=resume,
    )
    if result.status == "completed" and result.best is not None and config.meta_test.seeds > 0:
        try:
            meta_test_best(experiment.pk, config, result.baseline_loss)
        except Exception:  # the search itself succeeded and is stored; only the extra numbers are missing
            logger.exception("experiment %s: meta-testing the best loss failed", experiment.pk)
    return result.status


def meta_test_best(experiment_id: int, config, baseline: str) -> None:
    """Meta-test the experiment's best learned loss against the baseline and store it on its row.

    Runs after the search has been recorded as succeeded, so its losses can already be downloaded;
    watchers are told with a `meta_test_finished` message when the numbers are in.
    """
    from search_engine.metatest import evaluate_learned_loss
    from search_engine.tasks import load_task

    best = LearnedLoss.objects.filter(experiment_id=experiment_id, rank=1).first()
    if best is None:
        return
    record = evaluate_learned_loss(load_task(config), config, best.expression, best.weights, baseline)
    LearnedLoss.objects.filter(pk=best.pk).update(meta_test=json_ready(record))
    publish(experiment_id, {"type": "meta_test_finished", "learned_loss": best.pk, "meta_test": json_ready(record)})
