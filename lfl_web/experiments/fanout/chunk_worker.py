"""A worker's side of a chunk of a search: claim it under a lease, evaluate it, store its outcomes.

A worker claims a chunk under a lease (`Chunk.claim`) and renews it from a background thread
while it works, so the coordinator can tell a lost worker (lease run out) from a slow one.
Imports torch only when a chunk runs (`fanout.evaluator_cache`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from lfl_web.experiments.fanout import search_driver
from lfl_web.experiments.fanout.cancel_poll import CancelPoll
from lfl_web.experiments.fanout.dispatch import inline_queue
from lfl_web.experiments.fanout.evaluator_cache import evaluator_for
from lfl_web.experiments.models import Chunk, ChunkStatus

logger = logging.getLogger(__name__)

#: The reason stored for the candidates of a chunk whose evaluation raised.
FAILED_PREFIX = "evaluation failed"


class Lease:
    """Renews a chunk's lease every third of LFL_CHUNK_LEASE_SECONDS from a thread, while in the block."""

    def __init__(self, chunk: Chunk, worker: str):
        self.chunk, self.worker = chunk, worker
        self.seconds = settings.LFL_CHUNK_LEASE_SECONDS
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._renew, name=f"lease-{chunk.pk}", daemon=True)

    def until(self):
        return timezone.now() + timedelta(seconds=self.seconds)

    def __enter__(self) -> Lease:
        if settings.LFL_CHUNK_DISPATCH != "inline":  # inline: nobody else could take it
            self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _renew(self) -> None:
        try:
            while not self.done.wait(self.seconds / 3):
                if not self.chunk.renew(self.worker, self.until()):
                    logger.warning("%s: the lease was taken over; its outcomes may be stored by another worker",
                                   self.chunk)
                    return
        except Exception:  # the database is unreachable: the lease runs out and the chunk is sent again
            logger.warning("%s: could not renew the lease", self.chunk, exc_info=True)
        finally:
            connection.close()  # this thread's own connection


def holder_name(node: str, pid: int) -> str:
    """How a chunk's holder is named: its Celery node and its process ("worker1@host#1234"), so a
    replaced pool process can tell its dead predecessor's chunks from its live siblings'."""
    return f"{node}#{pid}"


def dead_sibling(chunk: Chunk, worker: str) -> str | None:
    """The chunk's holder when it is a process of `worker`'s own node (the same machine) that no longer
    exists: a pool process killed mid-chunk, whose message came back to its replacement. None otherwise
    (a live holder, another node's, whose processes this one cannot see, or an unnamed one)."""
    holder = chunk.worker if chunk.status == ChunkStatus.RUNNING else ""
    node, _, pid = holder.rpartition("#")
    if not node or node != worker.rpartition("#")[0] or not pid.isdigit() or holder == worker:
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return holder
    except PermissionError:  # it exists, under another user
        return None
    return None


def run_chunk(chunk_id: int, *, worker: str) -> str:
    """Evaluate chunk `chunk_id` for `worker` and move its search on; returns what happened:
    "done", "failed" (the evaluator raised; its candidates are recorded with the error),
    "stopped" (a cancel request), or "dropped" (finished, held by another, or gone)."""
    chunk = Chunk.objects.select_related("experiment").filter(pk=chunk_id).first()
    if chunk is None or chunk.experiment.is_finished:
        return "dropped"
    experiment = chunk.experiment
    if experiment.cancel_requested:
        search_driver.advance(experiment.pk)
        return "stopped"
    lease = Lease(chunk, worker)
    if not chunk.claim(worker, lease.until(), orphaned_from=dead_sibling(chunk, worker)):
        return "dropped"
    from search_engine.facade import interrupt

    with lease:
        started = time.perf_counter()
        try:
            with interrupt.watching(CancelPoll(experiment.pk)):
                outcomes, status, error = _evaluate(chunk), ChunkStatus.DONE, ""
        except interrupt.Stopped:
            Chunk.objects.filter(pk=chunk.pk, status=ChunkStatus.RUNNING, worker=worker).update(
                status=ChunkStatus.PENDING, lease_until=None)
            outcomes = None
        except Exception as exc:
            logger.exception("%s failed on %s", chunk, worker)
            error = f"{type(exc).__name__}: {exc}"
            failed = search_driver.method_of(experiment.config).failed_outcome(f"{FAILED_PREFIX}: {error}")
            outcomes = [failed for _ in chunk.items]
            status = ChunkStatus.FAILED
        if outcomes is not None and chunk.store(status, outcomes, error):
            logger.info("%s: %s on %s in %.1f s", chunk, status, worker, time.perf_counter() - started)
    search_driver.advance(experiment.pk)
    return "stopped" if outcomes is None else str(status)


def _evaluate(chunk: Chunk) -> list[dict]:
    """The chunk's outcomes as JSON, evaluated as its method says (EvoMAL: screen -> local search ->
    fitness, batched as the plan says; TaylorGLO: training; ML3: a block of meta steps)."""
    state = chunk.experiment.stored_search.state
    method = search_driver.method_of(chunk.experiment.config)
    task, evaluator = evaluator_for(chunk.experiment_id, search_driver.search_config(chunk.experiment),
                                    saved_plan=state.get("plan"))
    items = [method.item_from_dict(item) for item in chunk.items]
    return [method.outcome_to_dict(o) for o in method.evaluate(evaluator, chunk.phase, items)]


def drain() -> int:
    """Evaluate the chunks queued inline in this process (LFL_CHUNK_DISPATCH "inline") until none
    is left; returns how many ran."""
    ran, queued = 0, inline_queue()
    while queued:
        run_chunk(queued.popleft(), worker="inline")
        ran += 1
    return ran
