"""Transfers: a learned loss meta-tested on another task (dataset + model) than the one it was learned on.

One row per (learned loss, target dataset, target model): the latest run. Asking again for a task
that has finished (succeeded or failed) runs it again on the same row: the previous record stays
until the new run succeeds (and replaces it) or fails (and clears it); a run that is queued or
running is not asked twice. So the page, the API and the leaderboard read one current answer per
loss and task.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from lfl_web.experiments.models.experiment import Experiment
from search_engine.facade import Verdict, catalog
from search_engine.facade import verdict as meta_test_verdict


class TransferStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


UNFINISHED_TRANSFERS = (TransferStatus.QUEUED, TransferStatus.RUNNING)


class TransferRunQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Transfers of the losses `user` may see (those of experiments visible to them)."""
        return self.filter(learned_loss__experiment__in=Experiment.objects.visible_to(user))

    def succeeded_on(self, dataset: str, model: str):
        return self.filter(dataset=dataset, model=model, status=TransferStatus.SUCCEEDED)


class TransferRun(models.Model):
    """The latest meta-test of `learned_loss` on the task `dataset` / `model`."""

    learned_loss = models.ForeignKey("experiments.LearnedLoss", on_delete=models.CASCADE,
                                     related_name="transfer_runs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    dataset = models.CharField(max_length=64)
    model = models.CharField(max_length=64)
    data_root = models.CharField(max_length=500, blank=True, default="")
    status = models.CharField(max_length=16, choices=TransferStatus.choices, default=TransferStatus.QUEUED)
    seeds = models.PositiveIntegerField(help_text="How many paired seeds the meta-test trains.")
    steps = models.PositiveIntegerField(help_text="Training steps per model.")
    seeds_done = models.PositiveIntegerField(default=0)
    record = models.JSONField(null=True, blank=True, help_text="The meta-test record of the latest success.")
    # of the comparison at each loss's own best learning rate where the record has one, else at the search's rate
    improvement = models.FloatField(null=True, blank=True,
                                    help_text="(baseline - learned) / baseline of the test metric's means.")
    error = models.TextField(blank=True, default="")
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TransferRunQuerySet.as_manager()

    class Meta:
        ordering = ["learned_loss", "dataset", "model"]
        constraints = [models.UniqueConstraint(fields=["learned_loss", "dataset", "model"],
                                               name="unique_transfer_per_task")]

    def __str__(self) -> str:
        return f"loss {self.learned_loss_id} on {self.dataset}/{self.model}: {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status not in UNFINISHED_TRANSFERS

    @property
    def tuned(self) -> dict | None:
        """The record's comparison at each loss's own best learning rate (None: compared only at the
        search's rate, as transfers were before they were tuned)."""
        tuned = (self.record or {}).get("tuned_lr")
        return tuned if isinstance(tuned, dict) else None

    @property
    def improvement_basis(self) -> str | None:
        """What `improvement` compares: "tuned" (each loss at its own best learning rate),
        "search_rate" (both at the search's rate, the paper's protocol), None without a record."""
        if not isinstance(self.record, dict):
            return None
        return "tuned" if self.tuned is not None else "search_rate"

    @property
    def verdict(self) -> Verdict | None:
        """The record in plain words (`scoring.verdict`), against the target kind's baseline; None
        before a run has succeeded."""
        if not isinstance(self.record, dict) or self.record.get("baseline_loss") not in catalog.BASELINES:
            return None
        return meta_test_verdict(self.record, catalog.kind_of_baseline(self.record["baseline_loss"]))

    def _update_if(self, condition: Q, **values) -> bool:
        """Set `values` if the row still meets `condition` (one UPDATE, so two workers cannot both win)."""
        changed = TransferRun.objects.filter(Q(pk=self.pk) & condition).update(**values)
        if changed:
            self.refresh_from_db()
        return bool(changed)

    def claim(self, task_id: str | None) -> bool:
        """Mark a queued run running for worker task `task_id`; a redelivery of that task after its
        worker was lost may take a running run over. False (nothing changed) otherwise."""
        condition = Q(status=TransferStatus.QUEUED)
        if task_id:
            condition |= Q(status=TransferStatus.RUNNING, celery_task_id=task_id)
        return self._update_if(condition, status=TransferStatus.RUNNING, seeds_done=0, started_at=timezone.now())

    def count_seed(self) -> None:
        self._update_if(Q(status=TransferStatus.RUNNING), seeds_done=models.F("seeds_done") + 1)

    def succeed(self, record: dict, improvement: float | None) -> bool:
        return self._update_if(Q(status=TransferStatus.RUNNING), status=TransferStatus.SUCCEEDED, record=record,
                               improvement=improvement, error="", finished_at=timezone.now())

    def fail(self, error: str) -> bool:
        return self._update_if(Q(status__in=UNFINISHED_TRANSFERS), status=TransferStatus.FAILED, error=error,
                               record=None, improvement=None, finished_at=timezone.now())

    def to_dict(self) -> dict:
        """The run as the API gives it: the verdict and `improvement` (tuned where the record is, see
        `improvement_basis`) lead; `improvement_at_search_rate` is the paper's protocol's figure."""
        verdict, record = self.verdict, self.record or {}
        return {
            "id": self.pk, "learned_loss": self.learned_loss_id, "dataset": self.dataset, "model": self.model,
            "verdict": None if verdict is None else verdict.to_dict(),
            "improvement": self.improvement, "improvement_basis": self.improvement_basis, "improvement_at_search_rate": record.get("relative_improvement"),
            "data_root": self.data_root or None, "status": self.status, "seeds": self.seeds, "steps": self.steps,
            "seeds_done": self.seeds_done, "record": self.record,
            "error": self.error or None, "created_at": self.created_at.isoformat() if self.created_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }
