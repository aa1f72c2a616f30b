"""One search over many workers: its state and its chunks of work, kept in the database.

The database is the record and the broker only carries work (see `fanout.search_driver`): after
every step the search's whole state (population, random state, equivalence cache, hall of fame,
history) is a `StoredSearch` row, and each generation's candidates are split into `Chunk` rows,
one per evaluator call, each holding its outcomes once a worker has stored them. Any worker can
therefore take any chunk and any process can move any search on.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from lfl_web.experiments.models.experiment import Experiment


class StoredSearch(models.Model):
    """An evolutionary search's state (`evolution.checkpoint.state_to_dict`) after its latest step."""

    experiment = models.OneToOneField(Experiment, primary_key=True, on_delete=models.CASCADE, related_name="stored_search")
    state = models.JSONField()
    generation = models.PositiveIntegerField(help_text="The generation being evaluated (the state's next generation).")
    generation_started = models.DateTimeField(default=timezone.now, help_text="When its chunks were first sent.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"search state of experiment {self.experiment_id} at generation {self.generation}"


class Phase(models.TextChoices):
    EVALUATE = "evaluate"  # screen -> (local search, mode "all") -> fitness for new candidates
    REFINE = "refine"  # local search mode "top_k": one of the generation's best, refined


class ChunkStatus(models.TextChoices):
    PENDING = "pending"  # stored, its message sent (or to be sent again)
    RUNNING = "running"  # a worker holds it while its lease lasts
    DONE = "done"  # its outcomes are stored
    FAILED = "failed"  # the evaluator raised: its candidates are recorded as failed with the error


FINISHED_CHUNKS = (ChunkStatus.DONE, ChunkStatus.FAILED)


class ChunkQuerySet(models.QuerySet):
    def of_step(self, experiment_id: int, generation: int, phase: str):
        return self.filter(experiment_id=experiment_id, generation=generation, phase=phase).order_by("number")

    def unfinished(self):
        return self.exclude(status__in=FINISHED_CHUNKS)

    def lease_expired(self, now=None):
        return self.filter(status=ChunkStatus.RUNNING, lease_until__lt=now or timezone.now())


class Chunk(models.Model):
    """One evaluator call of one generation: `items` are the candidates (WorkItem dicts: population
    index, prefix expression, canonical key), `outcomes` their results in the same order."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="chunks")
    generation = models.PositiveIntegerField()
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.EVALUATE)
    number = models.PositiveIntegerField(help_text="Its place in the generation's work, from 0.")
    items = models.JSONField()
    status = models.CharField(max_length=16, choices=ChunkStatus.choices, default=ChunkStatus.PENDING, db_index=True)
    outcomes = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=255, blank=True, default="", help_text="Who holds (or held) it.")
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker took it.")
    sent_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    objects = ChunkQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "generation", "phase", "number"],
                                               name="one_chunk_per_place")]
        ordering = ["experiment", "generation", "phase", "number"]

    def __str__(self) -> str:
        return f"chunk {self.number} ({self.phase}) of generation {self.generation}, experiment {self.experiment_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_CHUNKS

    @property
    def indices(self) -> list[int]:
        return [item["index"] for item in self.items]

    def claim(self, worker: str, lease_until, *, orphaned_from: str | None = None) -> bool:
        """Take the chunk for `worker`: one that is pending, or running under a lease that has
        expired (its worker was lost), or still held by `orphaned_from` (a holder the caller knows to
        be dead: a pool process of its own node that no longer exists). False, with nothing changed,
        for a chunk that is finished or held by a live lease: a second message for it is dropped."""
        now = timezone.now()
        takeable = Q(status=ChunkStatus.PENDING) | Q(status=ChunkStatus.RUNNING, lease_until__lt=now)
        if orphaned_from:
            takeable |= Q(status=ChunkStatus.RUNNING, worker=orphaned_from)
        taken = Chunk.objects.filter(takeable, pk=self.pk).update(status=ChunkStatus.RUNNING, worker=worker, attempts=F("attempts") + 1, started_at=now,
                 lease_until=lease_until)
        self.refresh_from_db()
        return bool(taken)

    def renew(self, worker: str, lease_until) -> bool:
        """Extend the lease while `worker` still holds the chunk; False once it does not."""
        return bool(Chunk.objects.filter(pk=self.pk, status=ChunkStatus.RUNNING, worker=worker)
                    .update(lease_until=lease_until))

    def store(self, status: str, outcomes: list[dict], error: str = "") -> bool:
        """Keep the chunk's outcomes, unless some are stored already (a redelivered chunk changes
        nothing stored); True if these were stored."""
        stored = Chunk.objects.filter(pk=self.pk).exclude(status__in=FINISHED_CHUNKS).update(
            status=status, outcomes=outcomes, error=error, finished_at=timezone.now(), lease_until=None)
        self.refresh_from_db()
        return bool(stored)
