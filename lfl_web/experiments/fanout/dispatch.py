"""A search's work sent out (see `fanout.search_driver`): its chunks to the evaluation queue, and its
meta-test once the search has completed, each through `broker.send`.

A message carries only a chunk's pk; the row says everything else, so a message may be lost (the
coordinator sends pending chunks again) or delivered twice (`Chunk.claim` drops the second).

settings.LFL_CHUNK_DISPATCH "celery" (the default) publishes to the evaluation queue; "inline"
queues the chunks in this process instead, and `chunk_worker.drain` evaluates them here one after another: the
same steps without a broker (the test suite's default, and a single-process fallback).
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from django.conf import settings
from django.utils import timezone

from lfl_web.experiments.broker import (
    BROKER_ERRORS,
    EVALUATE_CHUNK,
    QueueUnavailable,
    broker_connection,
    send,
)
from lfl_web.experiments.models import UNFINISHED, Chunk, ChunkStatus

logger = logging.getLogger(__name__)

_inline = threading.local()


def evaluation_queue() -> str:
    return settings.LFL_EVALUATION_QUEUE


def inline_queue() -> deque:
    if not hasattr(_inline, "chunks"):
        _inline.chunks = deque()
    return _inline.chunks


def send_chunks(chunk_ids, *, broker_url: str | None = None) -> list[int]:
    """Send these chunks to the evaluation queue; returns those the broker took (all, inline).

    A broker that is down is logged, not raised: the chunks stay pending with no `sent_at`, and
    the coordinator's sweep sends them again (the search itself is safe in the database).
    """
    chunk_ids = list(chunk_ids)
    if not chunk_ids:
        return []
    if settings.LFL_CHUNK_DISPATCH == "inline":
        inline_queue().extend(chunk_ids)
        return chunk_ids
    sent = []
    try:
        with broker_connection(broker_url) as connection:
            for pk in chunk_ids:
                send(EVALUATE_CHUNK, pk, connection=connection, queue=evaluation_queue())
                sent.append(pk)
    except (QueueUnavailable, *BROKER_ERRORS) as exc:
        logger.warning("the evaluation queue did not take chunks %s (%s); the coordinator sends them again",
                       [pk for pk in chunk_ids if pk not in sent], exc)
    Chunk.objects.filter(pk__in=sent).update(sent_at=timezone.now())
    return sent


def pending(experiment_id: int | None = None):
    """Pending chunks of searches still running (all, or one experiment's), in order."""
    chunks = Chunk.objects.filter(status=ChunkStatus.PENDING, experiment__status__in=UNFINISHED)
    if experiment_id is not None:
        chunks = chunks.filter(experiment_id=experiment_id)
    return chunks.order_by("experiment_id", "generation", "phase", "number")


def send_pending(experiment_id: int | None = None, *, broker_url: str | None = None) -> list[int]:
    """Send every pending chunk again (after the broker lost its queue); returns the pks sent."""
    return send_chunks(pending(experiment_id).values_list("pk", flat=True), broker_url=broker_url)


def send_meta_test(experiment_id: int, *, broker_url: str | None = None) -> None:
    """Meta-test a search that has just completed, as a task of its own (the experiment's task, under
    a new id written on the row first, see tasks.run_experiment): a worker lost in the middle has it
    delivered again. Inline, it runs here and now."""
    if settings.LFL_CHUNK_DISPATCH == "inline":
        from lfl_web.experiments.fanout.best_loss_meta_test import run_pending_meta_test

        run_pending_meta_test(experiment_id)
        return
    from lfl_web.experiments.services import publish_meta_test

    try:
        with broker_connection(broker_url) as connection:
            publish_meta_test(experiment_id, connection=connection)
    except QueueUnavailable as exc:  # the next stack start sends it (services.requeue_unfinished)
        logger.warning("experiment %s: the meta-test could not be queued: %s", experiment_id, exc)
