"""Where a search's checkpoint file lives on a worker's disk: a search that ran in one task before
it was stored in the database resumes from it (`search_driver.start`), and deleting the experiment
removes it."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings


def checkpoint_path(experiment_id: int) -> Path:
    """Where the worker keeps the search state of `experiment_id`, so a redelivered search resumes."""
    return Path(settings.LFL_CHECKPOINT_DIR) / f"experiment_{experiment_id}.json"
