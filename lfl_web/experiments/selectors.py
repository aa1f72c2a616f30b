"""Reads the pages, the API and the live stream name: each function is one query, named for its use.

The querysets' parts (`visible_to`, `for_list`, `ranked_by`, `tested_on`, ...) stay on the models;
a view asks for what it shows here, and a write goes through `services`. Functions that return a
queryset leave slicing and `get_object_or_404` to the caller.
"""

from __future__ import annotations

from lfl_web.experiments.models import Experiment, LearnedLoss, TransferRun


def experiment_list(user, scope: str = "all"):
    """The experiments list (page and API): those `user` may see (only their own for scope "mine"),
    newest first, each with its best fitness."""
    return Experiment.objects.for_list(user, scope)


def experiments_visible_to(user):
    """The experiments `user` may see: what a page or an endpoint looks one up in (404 otherwise)."""
    return Experiment.objects.visible_to(user)


def experiments_to_show(user):
    """The experiments `user` may see, each with its owner (the dashboard and the API name who started it)."""
    return experiments_visible_to(user).select_related("owner")


def may_view_experiment(user, experiment_id: int) -> bool:
    """Whether `user` may watch experiment `experiment_id` (the websocket asks before it joins)."""
    return experiments_visible_to(user).filter(pk=experiment_id).exists()


def experiment_with_owner(experiment_id: int) -> Experiment | None:
    """The experiment and its owner, for a snapshot of its dashboard; None if it is gone."""
    return Experiment.objects.select_related("owner").filter(pk=experiment_id).first()


def losses_visible_to(user):
    """The learned losses `user` may see, each with its experiment: what a download or a transfer
    request looks one up in."""
    return LearnedLoss.objects.visible_to(user).select_related("experiment")


def leaderboard_datasets(user) -> list[str]:
    """The data sets the leaderboard's losses (those `user` may see) were learned on, sorted: its
    dataset filter offers them besides the catalogue's."""
    return LearnedLoss.objects.visible_to(user).for_leaderboard().dataset_names()


def leaderboard(user, *, sort: str, method: str = "", dataset: str = "", model: str = "", metric: str = "",
                best_only: bool = True, tested_on: tuple[str, str] | None = None):
    """The leaderboard's rows that `user` may see (page and API): filtered, ranked by `sort` (see
    `LearnedLossQuerySet.ranked_by`), and with `tested_on` (dataset, model) only the losses with a
    held-out result on that task, ranked by it."""
    rows = LearnedLoss.objects.visible_to(user).ranked_by(sort, method=method, dataset=dataset, model=model,
                                                          metric=metric, best_only=best_only)
    return rows.tested_on(*tested_on) if tested_on else rows


def transfers_of(loss: LearnedLoss):
    """A learned loss's transfers, one per target task, by dataset and model."""
    return loss.transfer_runs.order_by("dataset", "model")


def transfers_visible_to(user):
    """The transfers `user` may see (those of the losses of experiments visible to them)."""
    return TransferRun.objects.visible_to(user)
