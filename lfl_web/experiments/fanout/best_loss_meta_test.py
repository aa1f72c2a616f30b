"""The meta-test a worker runs after a search has succeeded: the best few losses compared on
validation data, the chosen one meta-tested against the baseline on held-out data.

Imports torch (through search_engine) only when a meta-test runs, so a Celery parent process that
merely imports the tasks never touches CUDA.
"""

from __future__ import annotations

import logging

from lfl_web.experiments import services
from lfl_web.experiments.fanout.cancel_poll import CancelPoll
from lfl_web.experiments.live.recording import json_ready
from lfl_web.experiments.models import Experiment

logger = logging.getLogger(__name__)


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
    watchers get a `meta_test_progress` message as each part begins and after each seed, and a
    `meta_test_finished` message when the numbers are in.
    """
    from search_engine.facade import load_task, meta_test_final, search_rate_of

    losses = list(experiment.learned_losses.order_by("rank"))
    if not losses:
        raise LookupError("the search kept no learned loss to meta-test")
    services.start_meta_test(experiment=experiment)
    seeds = config.meta_test.seeds

    def seed_done(_seed: int) -> None:
        services.count_meta_test_seed(experiment=experiment, seeds=seeds)

    entries = [{"expression": loss.expression, "weights": loss.weights, "network": loss.network} for loss in losses]
    def phase(name: str) -> None:
        services.enter_meta_test_phase(experiment=experiment, phase=name, seeds=seeds)

    record = json_ready(meta_test_final(load_task(config), config, entries, experiment.baseline_loss,
                                        on_seed=seed_done, search_rate=search_rate_of(experiment.evaluation_plan),
                                        on_phase=phase))
    chosen = losses[record["rank"] - 1]
    services.finish_meta_test(experiment=experiment, learned_loss=chosen, record=record)
