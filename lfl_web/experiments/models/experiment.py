"""An experiment: who asked for which search, where it stands, and its state transitions."""

from __future__ import annotations

import re

from django.conf import settings
from django.db import models, transaction
from django.db.models import Avg, F, Min, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from lfl_web.experiments.results.task_facts import class_count, file_data_name, stored_class_count, task_kind
from lfl_web.experiments.submit.validation import validated_config
from search_engine.facade import MetaTestConfig, catalog, generation_count


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
    CANCELLED = "cancelled", "Cancelled"  # stopped by its owner (or staff); the search stays succeeded


#: `meta_test_error` of a meta-test that was stopped by request.
META_TEST_STOPPED = "stopped by request"

#: The start of a stored error that names the exception's class ("RuntimeError: ..."): a word for
#: the traceback, not for the sentence a page shows.
_EXCEPTION_NAME = re.compile(r"([A-Z][\w.]*):\s*(.*)", re.S)


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
        # newest first, said here: a model's Meta.ordering does not apply to a query that aggregates
        return (visible.select_related("owner").annotate(best_fitness=Min("generations__best_fitness"))
                .order_by("-created_at", "-pk"))

    def create_validated(self, *, owner, name: str, config, description: str = "", private: bool = False,
                         data_name: str = ""):
        """Validate everything (ValidationError keyed by field, nothing stored on error), then save.
        `data_name`: the name of the file the user uploaded (the configuration holds where the
        server keeps it, under another name)."""
        experiment = self.model(owner=owner, name=name, config=config, description=description, private=private,
                                data_name=data_name)
        experiment.full_clean()
        experiment.save()
        return experiment

    def asked_to_stop(self):
        """Searches a worker was running when asked to stop: after a restart no worker will end them."""
        return self.filter(status=Status.RUNNING, cancel_requested=True)

    def reset_unfinished(self) -> list[int]:
        """After a stack restart lost its queue: running searches go back to queued (they resume from
        their checkpoints; one asked to stop ends cancelled when a worker takes it). Returns the pks
        of the queued ones, to send to a worker."""
        self.filter(status=Status.RUNNING).update(status=Status.QUEUED)
        return list(self.filter(status=Status.QUEUED).order_by("pk").values_list("pk", flat=True))

    def waiting_for_meta_test(self):
        """Succeeded searches whose meta-test has not finished (a worker lost with a stopped stack)."""
        return self.filter(status=Status.SUCCEEDED, meta_test_status=MetaTestStatus.RUNNING)

    def meta_tests_asked_to_stop(self):
        """Meta-tests asked to stop that no worker has ended (it was lost with a stopped stack)."""
        return self.waiting_for_meta_test().filter(cancel_requested=True)


class Experiment(models.Model):
    """One search: who asked for it, its configuration, and where it stands."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    private = models.BooleanField(default=False, help_text="Only the owner (and staff) can see it.")
    # blank=True: {} is a whole configuration (every field has a default); clean() judges it.
    config = models.JSONField(blank=True, help_text="The search configuration as JSON; every field has a default.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    current_generation = models.PositiveIntegerField(default=0, help_text="Generations completed.")
    total_generations = models.PositiveIntegerField(default=0)
    baseline_loss = models.CharField(max_length=64, blank=True, default="")
    baseline_fitness = models.FloatField(null=True, blank=True)
    evaluation_plan = models.JSONField(
        null=True, blank=True, help_text="How the engine scores candidates (its plan_record), once the search starts.")
    error = models.TextField(blank=True, default="")
    error_detail = models.TextField(blank=True, default="", help_text="The traceback of a failure (shown to staff).")
    data_name = models.CharField(max_length=64, blank=True, default="",
                                 help_text="The name of the data file (as uploaded); empty for a catalogue data set.")
    n_classes = models.PositiveIntegerField(null=True, blank=True,
                                            help_text="Classes of a classification task (from its data, when created).")
    meta_test_status = models.CharField(max_length=16, choices=MetaTestStatus.choices, blank=True, default="")
    meta_test_error = models.TextField(blank=True, default="")
    meta_test_seeds_done = models.PositiveIntegerField(default=0, help_text="Meta-test seeds finished so far.")
    meta_test_phase = models.CharField(
        max_length=16, blank=True, default="",
        help_text="The running meta-test's part: final_choice, search_rate, tuning or tuned_seeds (its seeds counted "
                  "from 0 in each seed part).")
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
            self.total_generations = generation_count(self.config)  # the method's own count
            self.data_name = self.data_name or file_data_name(self.config)
            self.n_classes = class_count(self.config)

    @property
    def is_finished(self) -> bool:
        return self.status not in UNFINISHED

    @property
    def is_meta_testing(self) -> bool:
        """The search succeeded and a worker is meta-testing its best loss."""
        return self.status == Status.SUCCEEDED and self.meta_test_status == MetaTestStatus.RUNNING

    @property
    def failure_sentence(self) -> str:
        """Why the search failed, as the page says it ("The search failed: the csv file has no
        label column."); the exception's class is left to the traceback staff may open. "" if none."""
        error = self.error.strip()
        if not error:
            return ""
        named = _EXCEPTION_NAME.fullmatch(error)
        message = named.group(2).strip() if named else error
        if not message:
            return f"The search failed ({named.group(1)})."
        return f"The search failed: {message}{'' if message.endswith(('.', '!', '?')) else '.'}"

    @property
    def has_work_to_stop(self) -> bool:
        """What a cancel can stop: an unfinished search, or the meta-test that follows a success."""
        return not self.is_finished or self.is_meta_testing

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
    def dataset_name(self) -> str:
        """The data set as pages and the leaderboard name it: a file's name ("iris.csv"), else the
        catalogue's ("digits")."""
        return self.data_name or self.dataset

    @property
    def class_count(self) -> int | None:
        """Classes of a classification task: counted when the experiment was created, else the
        catalogue's count for its data set; None for regression or when unknown."""
        return stored_class_count(self.config, self.baseline_loss, self.n_classes)

    @property
    def method(self) -> catalog.Method:
        """The method that runs the search, as the catalogue describes it."""
        name = self.config.get("method", "evomal")
        return catalog.METHODS.get(name, catalog.METHODS["evomal"])

    @property
    def model_name(self) -> str:
        return self.config.get("task", {}).get("model", "")

    @property
    def task_kind(self) -> str:
        """"classification" or "regression": from the baseline the search used, else from the config."""
        return task_kind(self.config, self.baseline_loss)

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

    def latest_generation(self):
        return self.generations.order_by("-index").first()

    def best_learned_loss(self):
        return self.learned_losses.order_by("rank").first()

    def _update_if(self, condition: Q, **changes) -> bool:
        """Conditional UPDATE (safe against a worker and a web process racing); refreshes self."""
        changed = Experiment.objects.filter(condition, pk=self.pk).update(**changes)
        self.refresh_from_db()
        return bool(changed)

    def claim_for_worker(self, task_id: str | None) -> bool:
        """Mark running for the worker that got task `task_id`: a queued search, or a running one
        redelivered under the same task id (its worker was lost). False if it is finished, being
        cancelled, or running under another task: a second message for one search (such as one sent
        again after a broker restart) must not start it twice."""
        mine = Q(status=Status.QUEUED) | Q(status=Status.RUNNING, celery_task_id=task_id or "")
        return self._update_if(
            mine & Q(cancel_requested=False),
            status=Status.RUNNING, celery_task_id=task_id or "", error="",
            started_at=Coalesce(F("started_at"), Value(timezone.now())),
        )

    def request_cancel(self) -> bool:
        """Ask the search, or the meta-test of a succeeded one, to stop (a queued search is cancelled
        at once); False if there is nothing to stop or it was asked already. The search stays
        succeeded when its meta-test is stopped (see mark_meta_test_stopped)."""
        stoppable = Q(status__in=UNFINISHED) | Q(status=Status.SUCCEEDED, meta_test_status=MetaTestStatus.RUNNING)
        asked = self._update_if(stoppable & Q(cancel_requested=False), cancel_requested=True)
        if asked:
            self._update_if(Q(status=Status.QUEUED), status=Status.CANCELLED, finished_at=timezone.now())
        return asked

    def mark_failed(self, error: str, detail: str = "") -> bool:
        """Failed with `error` (one line: "ValueError: ..."); `detail` is its traceback, for staff."""
        return self._update_if(Q(status__in=UNFINISHED), status=Status.FAILED, error=error, error_detail=detail,
                               finished_at=timezone.now())

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
            self.learned_losses.replace_for(self, entries)
            return self._update_if(Q(status__in=UNFINISHED), status=status, finished_at=timezone.now(), **meta_test)

    def start_meta_test(self) -> None:
        """(Re)start counting meta-test seeds, e.g. when a redelivered task runs it again."""
        self._update_if(Q(meta_test_status=MetaTestStatus.RUNNING), meta_test_seeds_done=0, meta_test_phase="")

    def enter_meta_test_phase(self, phase: str) -> None:
        """The running meta-test has begun `phase` (see `meta_test_phase`): its seeds count from 0 again."""
        self._update_if(Q(meta_test_status=MetaTestStatus.RUNNING), meta_test_seeds_done=0, meta_test_phase=phase)

    def count_meta_test_seed(self) -> None:
        Experiment.objects.filter(pk=self.pk).update(meta_test_seeds_done=F("meta_test_seeds_done") + 1)
        self.refresh_from_db(fields=["meta_test_seeds_done"])

    def finish_meta_test(self, record: dict) -> None:
        """Store the meta-test on the loss it tested (the final choice's rank, 1 for records without one)
        and mark it done."""
        with transaction.atomic():
            self.learned_losses.filter(rank=record.get("rank", 1)).update(meta_test=record)
            self._update_if(Q(), meta_test_status=MetaTestStatus.SUCCEEDED, meta_test_error="")

    def mark_meta_test_failed(self, error: str) -> None:
        self._update_if(Q(), meta_test_status=MetaTestStatus.FAILED, meta_test_error=error)

    def mark_meta_test_stopped(self) -> bool:
        """End a running meta-test stopped by request; False if none was running (or the row is gone)."""
        changed = Experiment.objects.filter(pk=self.pk, meta_test_status=MetaTestStatus.RUNNING).update(
            meta_test_status=MetaTestStatus.CANCELLED, meta_test_error=META_TEST_STOPPED)
        if changed:
            self.refresh_from_db()
        return bool(changed)

    def meta_test_view(self, best) -> str:
        """What the dashboard's meta-test panel shows for `best` (the rank-1 learned loss or None):
        "results", "running", "failed", "stopped" (its meta-test was stopped by request), "not_run"
        (succeeded without one), "cancelled" (the search was), or "" (no panel). The page and the live
        updates both render the panel from this (templates/experiments/_meta_test.html)."""
        if best is not None and best.meta_test:
            return "results"
        if self.meta_test_status in (MetaTestStatus.RUNNING, MetaTestStatus.FAILED):
            return self.meta_test_status
        if self.meta_test_status == MetaTestStatus.CANCELLED:
            return "stopped"
        if best is None:
            return ""
        return {Status.SUCCEEDED: "not_run", Status.CANCELLED: "cancelled"}.get(self.status, "")

    @property
    def meta_test_plan(self) -> dict:
        """Seeds and steps of the meta-test, and whether it also compares each loss at its own best
        learning rate (`tune_lr`, the engine's default where the configuration leaves it out)."""
        section = self.config.get("meta_test", {})  # stored configurations have every field filled in
        tune_lr = section.get("tune_lr", MetaTestConfig.tune_lr)
        return {"seeds": section.get("seeds"), "steps": section.get("steps"), "tune_lr": bool(tune_lr)}

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
        return catalog.metric_name(self.task_kind)

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
