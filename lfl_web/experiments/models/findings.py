"""What a search found: each generation's summary, every evaluated candidate, and the learned
losses it kept (what the leaderboard lists)."""

from __future__ import annotations

from functools import cached_property

from django.db import models
from django.db.models import (
    Case,
    CharField,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    Max,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from lfl_web.experiments.models.experiment import Experiment, Status
from lfl_web.experiments.models.transfer_run import TransferRun
from lfl_web.experiments.results.loss_shapes import shape_data
from search_engine.facade import Verdict, catalog
from search_engine.facade import verdict as meta_test_verdict


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


def _json_number(field: str, key: str):
    """The number under `key` of JSON column `field` (a nested key as "tuned_lr__learned_mean"), NULL
    where it is missing or null (SQLite reads a JSON null as the text 'null', which a cast would turn into 0)."""
    return Case(When(**{f"{field}__{key}": None}, then=Value(None)),
                default=Cast(KT(f"{field}__{key}"), FloatField()), output_field=FloatField())


def _relative_drop(learned: str, baseline: str):
    """(baseline - learned) / baseline of two annotated means; NULL where a mean is missing or the
    baseline's is 0 and the learned loss's is not (no finite ratio; such a loss is worse)."""
    ratio = (F(baseline) - F(learned)) / F(baseline)
    return Case(When(**{f"{baseline}__gt": 0, f"{learned}__isnull": False}, then=ratio),
                When(**{baseline: 0, learned: 0}, then=Value(0.0)), default=None, output_field=FloatField())


#: Leaderboard sort keys -> ordering (lower fitness is better; larger improvement is better).
#: "meta_test": the losses with a held-out meta-test first, by how much lower their test metric's
#: mean is than the baseline's (relative, so tasks and metrics compare), each at its own best
#: learning rate where the meta-test compared so, else at the search's rate; then the others by
#: validation fitness (see `with_test_improvement`).
LEADERBOARD_ORDERINGS = {
    "fitness": ("validation_fitness", "complexity", "-created_at", "pk"),
    "improvement": (F("improvement").desc(nulls_last=True), "validation_fitness", "pk"),
    "date": ("-created_at", "-pk"),
    "meta_test": ("untested", F("test_improvement").desc(nulls_last=True), F("test_learned").asc(nulls_last=True),
                  "validation_fitness", "complexity", "pk"),
}
#: The leaderboard's order (page and API) when none is asked for.
DEFAULT_LEADERBOARD_SORT = "meta_test"


class LearnedLossQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self.filter(experiment__in=Experiment.objects.visible_to(user))

    def with_improvement(self):
        """Annotate `improvement`: baseline minus learned fitness (positive: the learned loss is better)."""
        return self.annotate(
            improvement=ExpressionWrapper(F("baseline_fitness") - F("validation_fitness"), output_field=FloatField())
        )

    def with_test_improvement(self):
        """Annotate the held-out meta-test (`meta_test`, a `metatest.evaluate_learned_loss` record):

        `untested`        0 when there is one, 1 when not;
        `test_tuned`      1 where it compares each loss at its own best learning rate ("tuned_lr"),
                          0 where only at the search's rate (a record stored with tune_lr off);
        `test_learned`, `test_baseline`, `test_improvement`
                          the comparison ranked by: the tuned one where there is one, else the one at
                          the search's rate. The test metric's means, and (baseline - learned) /
                          baseline: 0.25 for a quarter lower test error, None where a mean is missing
                          (a seed diverged) or the baseline's is 0 and the learned loss's is not;
        `fixed_learned`, `fixed_baseline`, `fixed_improvement`
                          the same at the search's learning rate (the paper's protocol).
        """
        tuned = Q(meta_test__has_key="tuned_lr")

        def leading(key: str, fixed: str):
            return Case(When(tuned, then=_json_number("meta_test", f"tuned_lr__{key}")), default=F(fixed),
                        output_field=FloatField())

        return self.annotate(
            fixed_learned=_json_number("meta_test", "learned_mean"),
            fixed_baseline=_json_number("meta_test", "baseline_mean"),
            untested=Case(When(meta_test__isnull=True, then=Value(1)), default=Value(0), output_field=IntegerField()),
            test_tuned=Case(When(tuned, then=Value(1)), default=Value(0), output_field=IntegerField()),
        ).annotate(
            test_learned=leading("learned_mean", "fixed_learned"),
            test_baseline=leading("baseline_mean", "fixed_baseline"),
            fixed_improvement=_relative_drop("fixed_learned", "fixed_baseline"),
        ).annotate(test_improvement=_relative_drop("test_learned", "test_baseline"))

    def with_method_label(self):
        """Annotate `method_label`: the catalogue's name of the method that learned the loss ("EvoMAL")."""
        labels = [When(method=m.name, then=Value(m.label)) for m in catalog.METHODS.values()]
        return self.annotate(method_label=Case(*labels, default=F("method"), output_field=CharField()))

    def ranked_by(self, sort: str, *, method: str = "", dataset: str = "", model: str = "", metric: str = "",
                  best_only: bool = True):
        """Leaderboard rows: filtered by whichever of method/dataset/model/metric is given, sorted
        by a key of LEADERBOARD_ORDERINGS; with `best_only`, each experiment's learned loss alone:
        the one its meta-test chose and tested (`scoring.final_choice`), else its rank-1 loss."""
        given = {"method": method, "dataset": dataset, "model": model, "metric": metric}
        rows = (self.for_leaderboard().with_improvement().with_test_improvement().with_method_label()
                .filter(**{k: v for k, v in given.items() if v}))
        if best_only:
            tested = self.model.objects.filter(experiment=OuterRef("experiment"), meta_test__isnull=False)
            rows = rows.filter(Q(meta_test__isnull=False) | (Q(rank=1) & ~Exists(tested)))
        return rows.order_by(*LEADERBOARD_ORDERINGS[sort])

    def tested_on(self, dataset: str, model: str):
        """Only the losses with a held-out result on `dataset` / `model`, wherever they were learned: a
        succeeded transfer to that task, or their own meta-test when they were learned there (a
        transfer, being asked for, wins over it). Annotated `tested_learned`, `tested_baseline` (the
        test metric's means) and `tested_improvement` (relative, as `test_improvement`), and ranked
        by it, best first. Call it on `ranked_by` rows (it reads their meta-test annotations)."""
        runs = TransferRun.objects.succeeded_on(dataset, model).filter(learned_loss=OuterRef("pk"))

        def from_run(key: str):
            return Subquery(runs.annotate(value=_json_number("record", key)).values("value")[:1],
                            output_field=FloatField())

        own = Q(dataset=dataset, model=model, untested=0)

        def own_or(field: str, transferred):
            return Coalesce(transferred, Case(When(own, then=F(field)), default=None, output_field=FloatField()))

        return self.filter(Q(Exists(runs)) | own).annotate(
            tested_learned=own_or("test_learned", from_run("learned_mean")),
            tested_baseline=own_or("test_baseline", from_run("baseline_mean")),
            tested_improvement=own_or("test_improvement", Subquery(runs.values("improvement")[:1])),
        ).order_by(F("tested_improvement").desc(nulls_last=True), F("tested_learned").asc(nulls_last=True),
                   "validation_fitness", "pk")

    def for_leaderboard(self):
        """Losses of finished searches, best first within each dataset and model."""
        return (
            self.filter(experiment__status__in=[Status.SUCCEEDED, Status.CANCELLED])
            .select_related("experiment", "experiment__owner")
            .order_by("dataset", "model", "validation_fitness", "complexity", "pk")
        )

    def dataset_names(self) -> list[str]:
        """The data sets these losses were learned on, as the leaderboard names them, sorted."""
        return list(self.order_by("dataset").values_list("dataset", flat=True).distinct())

    def replace_for(self, experiment: Experiment, entries: list[dict]) -> None:
        """Store `entries` (hall-of-fame dicts, best first) as this experiment's learned losses,
        under the experiment's data set name (a file's own name for a user's data), each with its
        loss shape (computed here, in the worker that stores them: the numeric stack is loaded)."""
        task = experiment.config.get("task", {})
        kind, classes = experiment.task_kind, experiment.class_count
        self.filter(experiment=experiment).delete()
        self.bulk_create(
            self.model(
                experiment=experiment, rank=rank, expression=e["expression"], canonical_key=e.get("canonical_key", ""),
                latex=e.get("latex", ""), weights=e.get("weights"), network=e.get("network"),
                method=experiment.config.get("method", "evomal"), complexity=e.get("size", 0),
                validation_fitness=e["fitness"], baseline_fitness=experiment.baseline_fitness,
                generation=e.get("generation", 0), dataset=experiment.dataset_name, model=task.get("model", ""),
                metric=experiment.metric,
                loss_shape=shape_data(expression=e["expression"], weights=e.get("weights"), network=e.get("network"),
                                      kind=kind, n_classes=classes),
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
    network = models.JSONField(null=True, blank=True, help_text="A network loss (ML3): its architecture and weights.")
    method = models.CharField(max_length=32, default="evomal", help_text="The method that learned it.")
    complexity = models.PositiveIntegerField(default=0, help_text="Expression tree size.")
    validation_fitness = models.FloatField()
    baseline_fitness = models.FloatField(null=True, blank=True)
    meta_test = models.JSONField(null=True, blank=True)
    loss_shape = models.JSONField(null=True, blank=True, help_text="Its value along simple slices, for the "
                                  "dashboard's plot (export.loss_shape); empty if it could not be computed.")
    generation = models.PositiveIntegerField(default=0, help_text="When it was first found.")
    dataset = models.CharField(max_length=64)  # Experiment.dataset_name: "digits", or a file's "iris.csv"
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

    @cached_property
    def verdict(self) -> Verdict:
        """Its meta-test in plain words (`scoring.verdict`): better than, no better than or worse than
        the baseline at its best learning rate, or untested; the same words on every page and the API."""
        return meta_test_verdict(self.meta_test, self.experiment.task_kind)

    @property
    def relative_improvement(self) -> float | None:
        """(baseline - fitness) / baseline, e.g. 0.25 for a quarter lower error; None if undefined."""
        if self.baseline_fitness is None or not self.baseline_fitness:
            return None
        return (self.baseline_fitness - self.validation_fitness) / self.baseline_fitness

    def to_dict(self) -> dict:
        return {
            "experiment_id": self.experiment_id, "rank": self.rank, "expression": self.expression,
            "latex": self.latex, "weights": self.weights, "network": self.network, "method": self.method,
            "complexity": self.complexity,
            "validation_fitness": self.validation_fitness, "baseline_fitness": self.baseline_fitness,
            "meta_test": self.meta_test, "generation": self.generation, "dataset": self.dataset,
            "model": self.model, "metric": self.metric,
        }
