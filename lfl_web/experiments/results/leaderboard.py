"""The leaderboard's parameters: its filters (a form that reports an unknown value and ignores it),
its sort tabs, and its "tested on" task.

The rows themselves are read by `selectors.leaderboard_rows`, ranked by the models' querysets.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages

from lfl_web.experiments.models import DEFAULT_LEADERBOARD_SORT, LEADERBOARD_ORDERINGS
from lfl_web.experiments.submit.experiment_form import METHOD_CHOICES
from lfl_web.experiments.transfers.request_checks import target_datasets
from search_engine.facade import catalog

#: The leaderboard's sort keys (LEADERBOARD_ORDERINGS) as its tabs name them, in tab order.
LEADERBOARD_SORTS = (("meta_test", "held-out meta-test"), ("fitness", "validation fitness"),
                     ("improvement", "improvement over baseline"), ("date", "date"))


def _filter_field(what: str, choices: list[tuple[str, str]]) -> forms.ChoiceField:
    known = ", ".join(value for value, _ in choices if value)
    message = f"unknown {what} '%(value)s' (ignored); choose one of: {known}"
    return forms.ChoiceField(required=False, choices=choices, error_messages={"invalid_choice": message})


def _dataset_filter(learned_on=()) -> forms.ChoiceField:
    """The catalogue's own data sets, then the other names losses were learned on (files: "iris.csv")."""
    own = [n for n in catalog.dataset_names() if n not in catalog.FILE_DATASETS]
    names = own + sorted(set(learned_on) - set(own))
    return _filter_field("dataset", [("", "any dataset"), *((n, n) for n in names)])


class LeaderboardFilterForm(forms.Form):
    """GET parameters of the leaderboard; an invalid one is reported and ignored."""

    sort = _filter_field("sort key", [(k, k) for k in LEADERBOARD_ORDERINGS])
    method = _filter_field("method", [("", "any method"), *METHOD_CHOICES])
    dataset = _dataset_filter()
    model = _filter_field("model", [("", "any model")] + [(n, n) for n in catalog.model_names()])
    metric = _filter_field("metric", [("", "any metric")] + [(m, m) for m in catalog.METRICS])
    ranks = _filter_field("ranks", [("best", "each experiment's best"), ("all", "every hall-of-fame entry")])

    def __init__(self, data=None, *, datasets=()):
        """`datasets`: the names of the data sets the listed losses were learned on
        (`LearnedLossQuerySet.dataset_names`), offered besides the catalogue's."""
        super().__init__(data)
        self.fields["dataset"] = _dataset_filter(datasets)
        self.fields["model"] = _filter_field("model", [("", "any model")] + [(n, n) for n in catalog.model_names()])

    def choices(self) -> dict:
        """The valid parameters (defaults for missing or invalid ones) as keyword arguments of `ranked_by`."""
        self.is_valid()  # fields with an error are left out of cleaned_data
        valid = self.cleaned_data
        return {
            "sort": valid.get("sort") or DEFAULT_LEADERBOARD_SORT, "method": valid.get("method", ""),
            "dataset": valid.get("dataset", ""), "model": valid.get("model", ""), "metric": valid.get("metric", ""),
            "best_only": valid.get("ranks") != "all",
        }


def tested_on_choice(request) -> tuple[str, str] | None:
    """The leaderboard's "tested on" task (?tested_dataset= &tested_model=), or None; a half or an
    unknown name is said so and ignored."""
    dataset, model = request.GET.get("tested_dataset", ""), request.GET.get("tested_model", "")
    if not (dataset or model):
        return None
    if dataset not in target_datasets() or model not in catalog.model_names():
        messages.warning(request, "“Tested on” needs a known dataset and a known model; showing all losses.")
        return None
    return dataset, model
