"""The admin: start experiments, watch rows, ask a search to stop. Results are read-only."""

from functools import partial

from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponseRedirect

from lfl_web.experiments.models import Experiment, Generation, LearnedLoss
from lfl_web.experiments.services import (
    QueueUnavailable,
    cancel_experiment,
    remove_experiment,
    send_to_worker,
)

EDITABLE_AFTER_START = ("name", "description", "private")


class GenerationInline(admin.TabularInline):
    model = Generation
    fields = ("index", "best_fitness", "mean_fitness", "evaluated", "rejected", "cache_hits", "best_expression", "seconds")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "status", "progress", "private", "created_at")
    list_filter = ("status", "private")
    search_fields = ("name", "description", "owner__username")
    actions = ("request_cancel",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return (*EDITABLE_AFTER_START, "config")
        return [f.name for f in Experiment._meta.fields if f.name != "id"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return [name for name in self.get_fields(request, obj) if name not in EDITABLE_AFTER_START]

    def get_inlines(self, request, obj):
        return [GenerationInline] if obj else []

    def get_changeform_initial_data(self, request):
        return {"config": {}}

    @admin.display(description="generations")
    def progress(self, obj):
        return f"{obj.current_generation} / {obj.total_generations}"

    def save_model(self, request, obj, form, change):
        """A new experiment belongs to whoever created it and goes to a worker straight away (once
        the admin's transaction commits; a task queue that does not take it withdraws it, see add_view)."""
        if not change:
            obj.owner = request.user
        super().save_model(request, obj, form, change)
        if not change:
            send_to_worker(experiment=obj)

    def log_addition(self, request, obj, message):
        """Logged once the task queue has taken the new search (on commit, after send_to_worker's
        callback): a withdrawn experiment leaves no "added" entry in the admin's history."""
        transaction.on_commit(partial(super().log_addition, request, obj, message))

    def add_view(self, request, form_url="", extra_context=None):
        """The add form; when the task queue is unreachable, the new experiment is withdrawn
        (services.send_to_worker): say so (NOT_SAVED_QUEUE_DOWN) and go back to the form."""
        try:
            return super().add_view(request, form_url, extra_context)
        except QueueUnavailable as exc:
            drop_success_messages(request)  # "… was added successfully" no longer holds
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request, obj):
        """Deleting in the admin removes the checkpoint and the uploaded data file too."""
        remove_experiment(experiment=obj)

    def delete_queryset(self, request, queryset):
        for experiment in queryset:
            remove_experiment(experiment=experiment)

    @admin.action(description="Ask the selected searches to stop")
    def request_cancel(self, request, queryset):
        asked = [e for e in queryset if cancel_experiment(experiment=e, user=request.user)]
        self.message_user(request, f"Asked {len(asked)} search(es) to stop.", messages.SUCCESS)


def drop_success_messages(request) -> None:
    """Forget the success messages queued for `request`, keeping the others."""
    kept = [m for m in messages.get_messages(request) if m.level != messages.SUCCESS]  # iterating marks all read
    for message in kept:
        messages.add_message(request, message.level, message.message, extra_tags=message.extra_tags)


@admin.register(LearnedLoss)
class LearnedLossAdmin(admin.ModelAdmin):
    list_display = ("expression", "experiment", "rank", "validation_fitness", "baseline_fitness", "metric", "dataset", "model")
    list_filter = ("dataset", "model", "metric")
    search_fields = ("expression", "experiment__name")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
