"""The coordinator: a light, periodic sweep that keeps fanned-out searches moving through faults.

Nothing waits on it: a search moves on by itself when its chunks finish (`search_driver.advance`). The
sweep only puts back what a fault took away, from the database's record:

- a worker lost mid-chunk: its lease runs out, the chunk goes back to pending and is sent again;
- a chunk whose message never left (the broker was down when it was made) is sent;
- a broker that restarted empty (the embedded Redis keeps nothing; seen as our marker key gone):
  every pending chunk is sent again (the queued searches are the stack's: `runstack` sends them);
- a process lost between storing a chunk's outcomes and moving the search on, or a cancel request
  while nothing of that search runs: every running search is advanced (a no-op when nothing is due).

Duplicates are harmless (`Chunk.claim`, `Experiment.claim_for_worker`), so the sweep may run in
several places at once; `manage.py coordinate` runs it every LFL_SWEEP_SECONDS (the stack starts one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from redis.exceptions import RedisError

from lfl_web.experiments.broker import BROKER_ERRORS
from lfl_web.experiments.fanout import dispatch, search_driver
from lfl_web.experiments.models import FINISHED_CHUNKS, UNFINISHED, Chunk, ChunkStatus, Experiment, Status

logger = logging.getLogger(__name__)

#: A key the coordinator keeps in a Redis broker: when it is gone, the broker lost its data.
MARKER_KEY = "lfl:coordinator:broker-marker"


@dataclass
class SweepReport:
    resent: list[int] = field(default_factory=list)  # chunk pks sent again
    finished: dict[int, str] = field(default_factory=dict)  # experiment pk -> "completed" / "stopped"
    broker_lost: bool = False

    def __bool__(self) -> bool:
        return bool(self.resent or self.finished or self.broker_lost)

    def describe(self, first_sweep: bool = False) -> str:
        """What the sweep did, for the log ("" when nothing). A broker without the marker at the first
        sweep is most likely a new one, not a lost one: said so."""
        parts = []
        if self.broker_lost:
            parts.append("marked the broker" if first_sweep else "the broker lost its data (its marker is gone)")
        if self.resent:
            parts.append(f"sent chunks {self.resent} again")
        parts += [f"experiment {pk} {how}" for pk, how in self.finished.items()]
        return "; ".join(parts)


def sweep(*, broker_url: str | None = None) -> SweepReport:
    """One pass (see the module docstring); returns what it did."""
    report = SweepReport()
    expired = _release_expired_leases()
    report.broker_lost = broker_lost(broker_url)
    if report.broker_lost:
        to_send = list(dispatch.pending().values_list("pk", flat=True))
    else:
        unsent = dispatch.pending().filter(sent_at__isnull=True).values_list("pk", flat=True)
        to_send = sorted(set(expired) | set(unsent))
    report.resent = dispatch.send_chunks(to_send, broker_url=broker_url)
    if report.broker_lost:
        mark_broker(broker_url)
    for pk in due_for_advance():
        finished = search_driver.advance(pk)  # a completed search's meta-test is sent with it
        if finished:
            report.finished[pk] = finished
    return report


def due_for_advance() -> list[int]:
    """Running fanned-out searches that a sweep should advance: asked to stop, or with no chunk of
    their current generation still out (its last chunk's process was lost before it advanced). A
    search whose chunks are still out is moved on by them, so it costs the sweep nothing but this query."""
    out = Chunk.objects.filter(experiment=OuterRef("pk"), generation=OuterRef("stored_search__generation")
                               ).exclude(status__in=FINISHED_CHUNKS)
    return list(Experiment.objects.filter(status=Status.RUNNING, stored_search__isnull=False)
                .filter(Q(cancel_requested=True) | ~Exists(out)).order_by("pk").values_list("pk", flat=True))


def release_every_lease() -> list[int]:
    """Every running chunk back to pending, whatever its lease says; returns their pks. Only for a
    stack starting with its own, new broker (the embedded Redis): no worker of the previous run can
    still be holding a chunk, so none need wait for its lease to run out."""
    return _release(Chunk.objects.filter(status=ChunkStatus.RUNNING))


def release_held_by(worker: str) -> list[int]:
    """Every chunk running under Celery node `worker` (e.g. "worker1@host", held by any of its
    processes: "worker1@host#1234") back to pending; returns their pks. Only for a worker known to be
    dead (the stack restarts it under the same name): its chunks need not wait for their leases to run out."""
    held = Q(worker=worker) | Q(worker__startswith=f"{worker}#")
    return _release(Chunk.objects.filter(held, status=ChunkStatus.RUNNING))


def _release_expired_leases() -> list[int]:
    """Running chunks whose lease ran out go back to pending; returns their pks."""
    expired = _release(Chunk.objects.lease_expired(timezone.now()).filter(experiment__status__in=UNFINISHED))
    if expired:
        logger.warning("chunks %s: their workers stopped renewing the lease; sending them again", expired)
    return expired


def _release(held) -> list[int]:
    """These running chunks back to pending (only those `held` still selects when updated); their pks."""
    pks = list(held.values_list("pk", flat=True))
    held.filter(pk__in=pks).update(status=ChunkStatus.PENDING, lease_until=None)
    return pks


def _redis(broker_url: str | None):
    url = broker_url or settings.CELERY_BROKER_URL
    if settings.LFL_CHUNK_DISPATCH == "inline" or not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def broker_lost(broker_url: str | None = None) -> bool:
    """Whether a Redis broker has lost its data since `mark_broker` (False for other brokers, or
    when it cannot be reached: then nothing can be sent anyway)."""
    client = _redis(broker_url)
    if client is None:
        return False
    try:
        return not client.exists(MARKER_KEY)
    except BROKER_ERRORS + (RedisError,) as exc:
        logger.warning("the broker does not answer: %s", exc)
        return False
    finally:
        client.close()


def mark_broker(broker_url: str | None = None) -> None:
    client = _redis(broker_url)
    if client is None:
        return
    try:
        client.set(MARKER_KEY, timezone.now().isoformat())
    except BROKER_ERRORS + (RedisError,) as exc:
        logger.warning("could not mark the broker: %s", exc)
    finally:
        client.close()
