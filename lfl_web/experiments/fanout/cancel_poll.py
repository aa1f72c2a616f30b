"""The cancel poll: how a worker running a search, a chunk or a meta-test learns that its owner
asked it to stop (the experiment's cancel flag), without asking the database at every step."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings

from lfl_web.experiments.models import Experiment


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
