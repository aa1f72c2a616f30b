"""Experiments and what their searches found: generations, candidates and learned losses.

The database is the record of a search: a worker writes every event here before announcing it,
and a browser that (re)connects reads `Experiment.snapshot()`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction
from django.db.models import Avg, ExpressionWrapper, F, FloatField, Max, Min, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from lfl_web.experiments.validation import validated_config


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


UNFINISHED = (Status.QUEUED, Status.RUNNING)


class MetaTestStatus(models.TextChoices):
    """The meta-test a worker runs on the best loss after a search completes."""

    NOT_RUN = "", "Not run"  # cancelled or failed searches, rows from before meta-testing existed
    RUNNING = "running", "Running"  # set together with the search's success: the worker goes on with it
    SUCCEEDED = "succeeded", "Succeeded"  # the numbers are in the best learned loss's `meta_test`
    FAILED = "failed", "Failed"  # `meta_test_error` says why; the search's results stay valid


#: Baseline loss -> task kind (the search compares with cross-entropy exactly for classification).
BASELINE_KINDS = {"cross_entropy": "classification", "squared_error": "regression"}
#: What a fitness value measures per task kind (lower is better).
METRICS_BY_KIND = {"classification": "error rate", "regression": "MSE"}
#: Datasets the engine knows to be regression tasks (csv/npz say so in their config's `kind`).
REGRESSION_DATASETS = ("diabetes",)


def iso(moment) -> str | None:
    return moment.isoformat() if moment else None


class ExperimentQuerySet(models.QuerySet):
    def visible_to(self, user):
        """What `user` may see: every shared experiment and their own private ones; staff see all."""
        if not user.is_authenticated:
            return self.none()
        if user.is_staff:
            return self
        return self.filter(Q(private=False) | Q(owner=user))

    def unfinished(self):
        return self.filter(status__in=UNFINISHED)

    def for_list(self, user, scope: str = "all"):
        """The experiments list: visible ones (only `user`'s own for scope "mine"), with their best fitness."""
        visible = self.visible_to(user)
        if scope == "mine":
            visible = visible.filter(owner=user)
        return visible.select_related("owner").annotate(best_fitness=Min("generations__best_fitness"))

    def create_validated(self, *, owner, name: str, config, description: str = "", private: bool = False):
        """Validate everything (ValidationError keyed by field, nothing stored on error), then save."""
        experiment = self.model(owner=owner, name=name, config=config, description=description, private=private)
        experiment.full_clean()
        experiment.save()
        return experiment

    def reset_unfinished(self) -> list[int]:
        """After a stack restart lost its queue: running searches go back to queued (they resume from
        their checkpoints), those asked to stop are cancelled. Returns the pks to send to a worker."""
        for experiment in self.filter(status=Status.RUNNING, cancel_requested=True):
            experiment.mark_finished(Status.CANCELLED)
        self.filter(status=Status.RUNNING).update(status=Status.QUEUED)
        return list(self.filter(status=Status.QUEUED).order_by("pk").values_list("pk", flat=True))

    def waiting_for_meta_test(self):
        """Succeeded searches whose meta-test has not finished (a worker lost with a stopped stack)."""
        return self.filter(status=Status.SUCCEEDED, meta_test_status=MetaTestStatus.RUNNING)


class Experiment(models.Model):
    """One search: who asked for it, its configuration, and where it stands."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    private = models.BooleanField(default=False, help_text="Only the owner (and staff) can see it.")
    config = models.JSONField(help_text="The search configuration as JSON; every field has a default.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    current_generation = models.PositiveIntegerField(default=0, help_text="Generations completed.")
    total_generations = models.PositiveIntegerField(default=0)
    baseline_loss = models.CharField(max_length=64, blank=True, default="")
    baseline_fitness = models.FloatField(null=True, blank=True)
    evaluation_plan = models.JSONField(
        null=True, blank=True, help_text="How the engine scores candidates (its plan_record), once the search starts.")
    error = models.TextField(blank=True, default="")
    meta_test_status = models.CharField(max_length=16, choices=MetaTestStatus.choices, blank=True, default="")
    meta_test_error = models.TextField(blank=True, default="")
    meta_test_seeds_done = models.PositiveIntegerField(default=0, help_text="Meta-test seeds finished so far.")
    celery_task_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ExperimentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    def clean(self) -> None:
        if self._state.adding:  # the configuration is fixed once the experiment exists
            self.config = validated_config(self.config)
            self.total_generations = self.config["search"]["generations"]

    @property
    def is_finished(self) -> bool:
        return self.status not in UNFINISHED

    def can_be_viewed_by(self, user) -> bool:
        return Experiment.objects.visible_to(user).filter(pk=self.pk).exists()

    def can_be_managed_by(self, user) -> bool:
        """Only the owner and staff may cancel or delete an experiment."""
        return user.is_authenticated and (user.is_staff or user.pk == self.owner_id)

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("experiment_detail", args=[self.pk])

    @property
    def dataset(self) -> str:
        return self.config.get("task", {}).get("dataset", "")

    @property
    def model_name(self) -> str:
        return self.config.get("task", {}).get("model", "")

    @property
    def task_kind(self) -> str:
        """"classification" or "regression": from the baseline the search used, else from the config."""
        if self.baseline_loss in BASELINE_KINDS:
            return BASELINE_KINDS[self.baseline_loss]
        task = self.config.get("task", {})
        if task.get("kind") in ("classification", "regression"):
            return task["kind"]
        return "regression" if task.get("dataset") in REGRESSION_DATASETS else "classification"

    @property
    def progress_percent(self) -> int:
        if not self.total_generations:
            return 0
        return min(100, round(100 * self.current_generation / self.total_generations))

    def progress_summary(self) -> dict:
        """Counters for the dashboard: totals over the stored generations and the ETA in seconds
        (mean seconds per generation times the generations left; None until one has finished)."""
        totals = self.generations.aggregate(
            evaluated=Coalesce(Sum("evaluated"), 0), rejected=Coalesce(Sum("rejected"), 0),
            cache_hits=Coalesce(Sum("cache_hits"), 0), mean_seconds=Avg("seconds"),
        )
        left = max(0, self.total_generations - self.current_generation)
        mean = totals.pop("mean_seconds")
        running = not self.is_finished
        totals["eta_seconds"] = mean * left if running and mean is not None and left else None
        return totals

    def delete_with_files(self) -> None:
        """Delete the experiment, its rows, its uploaded data file and its checkpoint."""
        from lfl_web.experiments.runner import checkpoint_path  # the runner imports this module
        from lfl_web.experiments.uploads import remove_upload

        data_file, pk = self.config.get("task", {}).get("data_file"), self.pk
        self.delete()
        remove_upload(data_file)
        checkpoint_path(pk).unlink(missing_ok=True)

    def latest_generation(self):
        return self.generations.order_by("-index").first()

    def best_learned_loss(self):
        return self.learned_losses.order_by("rank").first()

    def enqueue(self) -> None:
        """Send the search to a worker once the surrounding transaction has committed."""
        from lfl_web.experiments.tasks import run_experiment  # tasks import this module

        transaction.on_commit(lambda: run_experiment.delay(self.pk))

    def _update_if(self, condition: Q, **changes) -> bool:
        """Conditional UPDATE (safe against a worker and a web process racing); refreshes self."""
        changed = Experiment.objects.filter(condition, pk=self.pk).update(**changes)
        self.refresh_from_db()
        return bool(changed)

    def claim_for_worker(self, task_id: str | None) -> bool:
        """Mark running for the worker that got it; False if it is finished or being cancelled."""
        return self._update_if(
            Q(status__in=UNFINISHED, cancel_requested=False),
            status=Status.RUNNING, celery_task_id=task_id or "", error="",
            started_at=Coalesce(F("started_at"), Value(timezone.now())),
        )

    def request_cancel(self) -> bool:
        """Ask the search to stop (a queued one is cancelled at once); False if there is nothing to stop."""
        asked = self._update_if(Q(status__in=UNFINISHED, cancel_requested=False), cancel_requested=True)
        if asked:
            self._update_if(Q(status=Status.QUEUED), status=Status.CANCELLED, finished_at=timezone.now())
        return asked

    def mark_failed(self, error: str) -> bool:
        return self._update_if(Q(status__in=UNFINISHED), status=Status.FAILED, error=error, finished_at=timezone.now())

    def mark_finished(self, status: str, best: dict | None = None) -> bool:
        """Succeeded or cancelled: keep the hall of fame as learned losses (at least `best`).

        A success that kept a loss is marked as being meta-tested in the same update, so a page
        never sees a succeeded search whose meta-test state is unknown; the worker goes on with it.
        """
        entries = self.final_hall_of_fame(best)
        meta_test = {}
        if status == Status.SUCCEEDED and entries:
            meta_test = {"meta_test_status": MetaTestStatus.RUNNING, "meta_test_error": "", "meta_test_seeds_done": 0}
        with transaction.atomic():
            LearnedLoss.objects.replace_for(self, entries)
            return self._update_if(Q(status__in=UNFINISHED), status=status, finished_at=timezone.now(), **meta_test)

    def start_meta_test(self) -> None:
        """(Re)start counting meta-test seeds, e.g. when a redelivered task runs it again."""
        self._update_if(Q(meta_test_status=MetaTestStatus.RUNNING), meta_test_seeds_done=0)

    def count_meta_test_seed(self) -> None:
        Experiment.objects.filter(pk=self.pk).update(meta_test_seeds_done=F("meta_test_seeds_done") + 1)
        self.refresh_from_db(fields=["meta_test_seeds_done"])

    def finish_meta_test(self, record: dict) -> None:
        """Store the meta-test of the best loss and mark it done."""
        with transaction.atomic():
            LearnedLoss.objects.filter(experiment=self, rank=1).update(meta_test=record)
            self._update_if(Q(), meta_test_status=MetaTestStatus.SUCCEEDED, meta_test_error="")

    def mark_meta_test_failed(self, error: str) -> None:
        self._update_if(Q(), meta_test_status=MetaTestStatus.FAILED, meta_test_error=error)

    def meta_test_view(self, best) -> str:
        """What the dashboard's meta-test panel shows for `best` (the rank-1 learned loss or None):
        "results", "running", "failed", "not_run" (succeeded without one), "cancelled", or "" (no panel).
        static/js/dashboard.js (metaTestView) decides the same way from the live state."""
        if best is not None and best.meta_test:
            return "results"
        if self.meta_test_status in (MetaTestStatus.RUNNING, MetaTestStatus.FAILED):
            return self.meta_test_status
        if best is None:
            return ""
        return {Status.SUCCEEDED: "not_run", Status.CANCELLED: "cancelled"}.get(self.status, "")

    @property
    def meta_test_plan(self) -> dict:
        """Seeds and steps of the meta-test, from the configuration (engine defaults if absent)."""
        section = self.config.get("meta_test", {})  # stored configurations have every field filled in
        return {"seeds": section.get("seeds"), "steps": section.get("steps")}

    def final_hall_of_fame(self, best: dict | None = None) -> list[dict]:
        last = self.generations.order_by("-index").first()
        entries = list(last.hall_of_fame) if last else []
        return entries or ([best] if best else [])

    @property
    def evaluation_label(self) -> str:
        """The evaluation plan in a few words ("batched, up to 25 per program, cpu"); empty before the search starts."""
        plan = self.evaluation_plan
        if not isinstance(plan, dict) or "strategy" not in plan:
            return ""
        how = f"batched, up to {plan['chunk']} per program" if plan["strategy"] == "batched" else plan["strategy"]
        return f"{how}, {plan.get('device', '?')}"

    @property
    def metric(self) -> str:
        """What fitness measures; known from the task before the search has reported its baseline."""
        return METRICS_BY_KIND[self.task_kind]

    def state_dict(self) -> dict:
        """The row as JSON-ready data (sent on connect and after every status change)."""
        return {
            "id": self.pk, "name": self.name, "description": self.description, "owner": self.owner.get_username(),
            "private": self.private, "config": self.config, "status": self.status,
            "cancel_requested": self.cancel_requested, "current_generation": self.current_generation,
            "total_generations": self.total_generations, "baseline_loss": self.baseline_loss,
            "baseline_fitness": self.baseline_fitness, "metric": self.metric, "error": self.error,
            "evaluation_plan": self.evaluation_plan, "evaluation_label": self.evaluation_label,
            "meta_test_status": self.meta_test_status, "meta_test_error": self.meta_test_error,
            "meta_test_seeds_done": self.meta_test_seeds_done, "meta_test_plan": self.meta_test_plan,
            "created_at": iso(self.created_at), "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
        }

    def snapshot(self) -> dict:
        """Current state for a (re)connecting client: the row, every generation's summary, the newest
        generation's candidates and the learned losses. Live events that follow may repeat some of
        it; a client applies them by key (generation, index), so repeats are harmless."""
        return {
            "type": "snapshot",
            "experiment": self.state_dict(),
            "generations": [g.to_dict() for g in self.generations.order_by("index")],
            "candidates": [c.to_dict() for c in self.candidates.of_latest_generation()],
            "learned_losses": [loss.to_dict() for loss in self.learned_losses.order_by("rank")],
        }


class Generation(models.Model):
    """The summary of one finished generation (a GenerationFinished event)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="generations")
    index = models.PositiveIntegerField()
    best_fitness = models.FloatField(null=True, blank=True)
    mean_fitness = models.FloatField(null=True, blank=True)
    median_fitness = models.FloatField(null=True, blank=True)
    evaluated = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    best_expression = models.TextField(blank=True, default="")
    best_latex = models.TextField(blank=True, default="")
    hall_of_fame = models.JSONField(default=list, blank=True)
    seconds = models.FloatField(default=0.0)

    class Meta:
        ordering = ["experiment", "index"]
        constraints = [models.UniqueConstraint(fields=["experiment", "index"], name="unique_generation_index")]

    def __str__(self) -> str:
        return f"generation {self.index} of {self.experiment_id}"

    def to_dict(self) -> dict:
        """Same keys as a generation_finished event."""
        return {
            "generation": self.index, "best_fitness": self.best_fitness, "mean_fitness": self.mean_fitness,
            "median_fitness": self.median_fitness, "evaluated": self.evaluated, "rejected": self.rejected,
            "cache_hits": self.cache_hits, "best_expression": self.best_expression or None,
            "best_latex": self.best_latex or None, "hall_of_fame": self.hall_of_fame, "seconds": self.seconds,
        }


class CandidateQuerySet(models.QuerySet):
    def of_latest_generation(self):
        latest = self.aggregate(latest=Max("generation"))["latest"]
        return self.filter(generation=latest).order_by("index") if latest is not None else self.none()


class Candidate(models.Model):
    """One evaluated member of a population (a CandidateEvaluated event)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="candidates")
    generation = models.PositiveIntegerField()
    index = models.PositiveIntegerField()
    expression = models.TextField()
    canonical_key = models.TextField()
    latex = models.TextField(blank=True, default="")
    fitness = models.FloatField(null=True, blank=True, help_text="Empty when rejected or diverged.")
    symbolic_fitness = models.FloatField(
        null=True, blank=True, help_text="Before local search refined its weights (empty if it was not refined)."
    )
    rejection_reason = models.TextField(blank=True, default="")
    cache_hit = models.BooleanField(default=False)
    weights = models.JSONField(null=True, blank=True)

    objects = CandidateQuerySet.as_manager()

    class Meta:
        ordering = ["experiment", "generation", "index"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "generation", "index"], name="unique_candidate_slot")
        ]

    def __str__(self) -> str:
        return self.expression

    def to_dict(self) -> dict:
        """Same keys as a candidate_evaluated event."""
        return {
            "generation": self.generation, "index": self.index, "expression": self.expression,
            "canonical_key": self.canonical_key, "latex": self.latex, "fitness": self.fitness,
            "symbolic_fitness": self.symbolic_fitness, "rejection_reason": self.rejection_reason or None, "cache_hit": self.cache_hit, "weights": self.weights,
        }


#: Leaderboard sort keys -> ordering (lower fitness is better; larger improvement is better).
LEADERBOARD_ORDERINGS = {
    "fitness": ("validation_fitness", "complexity", "-created_at", "pk"),
    "improvement": (F("improvement").desc(nulls_last=True), "validation_fitness", "pk"),
    "date": ("-created_at", "-pk"),
}


class LearnedLossQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self.filter(experiment__in=Experiment.objects.visible_to(user))

    def with_improvement(self):
        """Annotate `improvement`: baseline minus learned fitness (positive: the learned loss is better)."""
        return self.annotate(
            improvement=ExpressionWrapper(F("baseline_fitness") - F("validation_fitness"), output_field=FloatField())
        )

    def ranked_by(self, sort: str, *, dataset: str = "", model: str = "", metric: str = "", best_only: bool = True):
        """Leaderboard rows: filtered by whichever of dataset/model/metric is given, sorted by a
        key of LEADERBOARD_ORDERINGS; with `best_only`, each experiment's rank-1 loss alone."""
        filters = {k: v for k, v in {"dataset": dataset, "model": model, "metric": metric}.items() if v}
        rows = self.for_leaderboard().with_improvement().filter(**filters)
        if best_only:
            rows = rows.filter(rank=1)
        return rows.order_by(*LEADERBOARD_ORDERINGS[sort])

    def for_leaderboard(self):
        """Losses of finished searches, best first within each dataset and model."""
        return (
            self.filter(experiment__status__in=[Status.SUCCEEDED, Status.CANCELLED])
            .select_related("experiment", "experiment__owner")
            .order_by("dataset", "model", "validation_fitness", "complexity", "pk")
        )

    def replace_for(self, experiment: Experiment, entries: list[dict]) -> None:
        """Store `entries` (hall-of-fame dicts, best first) as this experiment's learned losses."""
        task = experiment.config.get("task", {})
        self.filter(experiment=experiment).delete()
        self.bulk_create(
            LearnedLoss(
                experiment=experiment, rank=rank, expression=e["expression"], canonical_key=e.get("canonical_key", ""),
                latex=e.get("latex", ""), weights=e.get("weights"), complexity=e.get("size", 0),
                validation_fitness=e["fitness"], baseline_fitness=experiment.baseline_fitness,
                generation=e.get("generation", 0), dataset=task.get("dataset", ""), model=task.get("model", ""),
                metric=experiment.metric,
            )
            for rank, e in enumerate(entries, start=1)
        )


class LearnedLoss(models.Model):
    """A loss a search kept (its hall of fame, best first): what the leaderboard lists."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="learned_losses")
    rank = models.PositiveIntegerField(help_text="1 is the experiment's best.")
    expression = models.TextField()
    canonical_key = models.TextField(blank=True, default="")
    latex = models.TextField(blank=True, default="")
    weights = models.JSONField(null=True, blank=True)
    complexity = models.PositiveIntegerField(default=0, help_text="Expression tree size.")
    validation_fitness = models.FloatField()
    baseline_fitness = models.FloatField(null=True, blank=True)
    meta_test = models.JSONField(null=True, blank=True)
    generation = models.PositiveIntegerField(default=0, help_text="When it was first found.")
    dataset = models.CharField(max_length=64)
    model = models.CharField(max_length=64)
    metric = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = LearnedLossQuerySet.as_manager()

    class Meta:
        ordering = ["experiment", "rank"]
        verbose_name_plural = "learned losses"
        constraints = [models.UniqueConstraint(fields=["experiment", "rank"], name="unique_learned_loss_rank")]

    def __str__(self) -> str:
        return f"#{self.rank} of {self.experiment_id}: {self.expression}"

    @property
    def weight_count(self) -> int:
        return len(self.weights or ())

    @property
    def relative_improvement(self) -> float | None:
        """(baseline - fitness) / baseline, e.g. 0.25 for a quarter lower error; None if undefined."""
        if self.baseline_fitness is None or not self.baseline_fitness:
            return None
        return (self.baseline_fitness - self.validation_fitness) / self.baseline_fitness

    def to_dict(self) -> dict:
        return {
            "experiment_id": self.experiment_id, "rank": self.rank, "expression": self.expression,
            "latex": self.latex, "weights": self.weights, "complexity": self.complexity,
            "validation_fitness": self.validation_fitness, "baseline_fitness": self.baseline_fitness,
            "meta_test": self.meta_test, "generation": self.generation, "dataset": self.dataset,
            "model": self.model, "metric": self.metric,
        }
