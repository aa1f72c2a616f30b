"""A learned loss's transfers as the pages show them (templates/experiments/_transfers.html): its
runs and the "try on another task" form."""

from __future__ import annotations

from lfl_web.experiments.models import LearnedLoss
from lfl_web.experiments.transfers.request_checks import target_datasets
from search_engine.facade import catalog


def panel_context(loss: LearnedLoss, *, for_request: bool = False, next_url: str = "") -> dict:
    """What templates/experiments/_transfers.html shows for `loss`: its runs (prefetched ones are
    used as they are), whether any is still pending, and the form's choices from the catalogue.
    `for_request`: the form carries the request's CSRF token (a page rendered for one viewer)."""
    runs = sorted(loss.transfer_runs.all(), key=lambda r: (r.dataset, r.model))
    return {
        "loss": loss, "runs": runs, "pending": any(not r.is_finished for r in runs),
        "datasets": [catalog.datasets()[name] for name in target_datasets()], "models": catalog.model_names(),
        "for_request": for_request,
        "next": next_url or loss.experiment.get_absolute_url(),
    }
