"""A worker's side of a transfer: claim the TransferRun row, meta-test the learned loss on the target
task (counting each finished seed on the row: the progress the page and the API show), and store
the record, or the error. The row is the record; the broker only carries its pk.
"""

from __future__ import annotations

import logging

from lfl_web.experiments.live.recording import json_ready
from lfl_web.experiments.models import TransferRun
from lfl_web.experiments.results.downloads import spec_for
from lfl_web.experiments.transfers.request_checks import transfer_settings
from search_engine.facade import leading_comparison, relative_improvement

logger = logging.getLogger(__name__)


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
