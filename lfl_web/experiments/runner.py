"""The worker's side of an experiment besides its chunks: the cancel poll, and the meta-test.

Imports torch (through search_engine) only when a meta-test runs, so a Celery parent process that
merely imports the tasks never touches CUDA.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings

from lfl_web.experiments import services
from lfl_web.experiments.models import Experiment
from lfl_web.experiments.recording import json_ready

logger = logging.getLogger(__name__)


class CancelPoll:
    """`should_stop` for run_search and the meta-test: True once the experiment's cancel flag is set
    (or the row is gone).

    The search asks between every evaluation, and `interrupt.check` every few training steps; the
    database is read at most once per `interval` seconds, and the answer stays True once it has
    become True.
    """

    def __init__(self, experiment_id: int, interval: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.experiment_id = experiment_id
        self.interval = settings.LFL_CANCEL_POLL_SECONDS if interval is None else interval
        self.clock = clock
        self.checked_at = -float("inf")
        self.stop = False

    def __call__(self) -> bool:
        now = self.clock()
        if not self.stop and now - self.checked_at >= self.interval:
            self.checked_at = now
            self.stop = not Experiment.objects.filter(pk=self.experiment_id, cancel_requested=False).exists()
        return self.stop


def run_pending_meta_test(experiment_id: int, config=None) -> None:
    """Meta-test the experiment's best loss if its success left it waiting for one (see
    `Experiment.mark_finished`). A failure, or a stop its owner asked for (`request_cancel`, noticed
    within a few training steps), is recorded on the experiment and shown on its page; the search
    itself succeeded and stays so."""
    from search_engine.facade import interrupt

    experiment = Experiment.objects.waiting_for_meta_test().filter(pk=experiment_id).first()
    if experiment is None:
        return
    try:
        if experiment.cancel_requested:  # asked to stop before a worker took it (or late in the search)
            raise interrupt.Stopped
        with interrupt.watching(CancelPoll(experiment_id)):
            if config is None:  # a redelivered task: the search is done, only the meta-test is left
                from search_engine.facade import load_config

                config = load_config(experiment.config, check_data=True)
            meta_test_best(experiment, config)
    except interrupt.Stopped:
        logger.info("experiment %s: the meta-test was stopped by request", experiment_id)
        services.stop_meta_test(experiment=experiment)
    except Exception as exc:
        logger.exception("experiment %s: meta-testing the best loss failed", experiment_id)
        services.fail_meta_test(experiment=experiment, error=f"{type(exc).__name__}: {exc}")


def meta_test_best(experiment: Experiment, config) -> None:
    """Choose the experiment's learned loss among its best few on validation data (each at its own
    best learning rate: `final_choice`), meta-test it against the baseline and store it on its row.

    Runs after the search has been recorded as succeeded, so its losses can already be downloaded;
    watchers get a `meta_test_progress` message after each seed and a `meta_test_finished`
    message when the numbers are in.
    """
    from search_engine.facade import load_task, meta_test_final, search_rate_of

    losses = list(experiment.learned_losses.order_by("rank"))
    if not losses:
        raise LookupError("the search kept no learned loss to meta-test")
    experiment.start_meta_test()
    seeds = config.meta_test.seeds

    def seed_done(_seed: int) -> None:
        services.count_meta_test_seed(experiment=experiment, seeds=seeds)

    entries = [{"expression": loss.expression, "weights": loss.weights, "network": loss.network} for loss in losses]
    record = json_ready(meta_test_final(load_task(config), config, entries, experiment.baseline_loss,
                                        on_seed=seed_done, search_rate=search_rate_of(experiment.evaluation_plan)))
    chosen = losses[record["rank"] - 1]
    services.finish_meta_test(experiment=experiment, learned_loss=chosen, record=record)
