"""The experiment dashboard's panels, rendered on the server for the page and for its live updates.

One renderer: the page includes the partials templates/experiments/_*.html, and every live update
(`update_message`) and the connect-time snapshot (`snapshot_message`) carry the same partials rendered
from the database, keyed by the id of their root element. The browser only swaps them in; it decides
nothing. Fragments never depend on who watches (they are rendered once per event, for every viewer):
controls that need a permission stay in the page, driven by the data attributes of the status badge.

What each event changed is named in PANELS_BY_EVENT, and the data is read lazily (`Dashboard`), so the
queries behind an update stay the same in number however long the search has run; the one read that
grew with it, the Pareto chart's, takes only the rows a generation adds (pareto.RunningFronts).
"""

from __future__ import annotations

import math
from functools import cached_property

from django.template.loader import render_to_string

from lfl_web.experiments.models import Experiment, MetaTestStatus
from lfl_web.experiments.results.downloads import DOWNLOAD_FORMATS
from lfl_web.experiments.results.pareto import RUNNING_FRONTS, ParetoChart, experiment_chart
from lfl_web.experiments.results.workers_panel import WorkersView, workers_view
from search_engine.facade import catalog, network_weight_count

#: Panel id (the id of the fragment's root element) -> its partial.
PANEL_TEMPLATES = {
    "status": "experiments/_status.html",
    "error": "experiments/_error.html",
    "progress-panel": "experiments/_progress.html",
    "workers-panel": "experiments/_workers.html",
    "best-panel": "experiments/_best.html",
    "pareto-panel": "experiments/_pareto.html",
    "hall-of-fame-panel": "experiments/_hall_of_fame.html",
    "candidates-panel": "experiments/_candidates.html",
    "loss-shape-panel": "experiments/_loss_shape.html",
    "meta-test-panel": "experiments/_meta_test.html",
}
PANEL_IDS = tuple(PANEL_TEMPLATES)

#: What a change of the experiment's row (status, cancel request, error, meta-test state) can change
#: (the candidates say whether their generation is still being evaluated; the Pareto front takes in
#: the candidates of a generation that a stop left unfinished; the workers panel stops refreshing).
STATUS_PANELS = ("status", "error", "progress-panel", "workers-panel", "hall-of-fame-panel", "candidates-panel",
                 "loss-shape-panel", "meta-test-panel", "pareto-panel")

#: Event type -> the panels it changes. Candidates re-render only their (latest) generation's table;
#: a generation re-renders the counters, the best loss, the hall of fame, the candidates header and
#: the Pareto front. The front is redrawn once per generation, never per candidate, from the rows
#: that generation added to the process's running front: every event costs the same after a
#: thousand generations as after one (the page and the snapshot read every row, once). The workers
#: panel follows every step of a fanned-out search: its chunks are stored with search_started and
#: generation_finished, and a candidate is recorded once its chunk is (workers taking chunks send no
#: event: the page fetches that panel again while the search runs, see workers_panel).
PANELS_BY_EVENT = {
    "search_started": ("progress-panel", "best-panel", "workers-panel"),  # totals, baseline, plan, metric, chunks
    "candidate_evaluated": ("candidates-panel", "workers-panel"),
    "candidate_refined": ("candidates-panel", "workers-panel"),
    "generation_finished": ("progress-panel", "best-panel", "hall-of-fame-panel", "candidates-panel", "pareto-panel",
                            "workers-panel"),
    # record_event follows search_finished with an experiment_status message: that one carries its panels
    "search_finished": (),
    "experiment_status": STATUS_PANELS,
    "meta_test_progress": ("meta-test-panel",),
    # the status badge says no more news follows; the best loss names the loss the meta-test chose
    "meta_test_finished": ("meta-test-panel", "status", "best-panel"),
}


class Dashboard:
    """What the panels show, read from the database on first use: a panel not rendered costs nothing."""

    download_formats = DOWNLOAD_FORMATS.values()

    def __init__(self, experiment: Experiment, running: bool = False):
        self.experiment = experiment
        self.running = running  # a generation's update: the chart reads only the rows not read before

    @cached_property
    def latest(self):
        """The newest finished generation, or None."""
        return self.experiment.latest_generation()

    @cached_property
    def best_so_far(self) -> dict | None:
        """The best loss found so far: the first entry of the newest generation's hall of fame (for
        CMA-ES and ML3 a later generation can be worse than an earlier one), else that generation's best."""
        latest = self.latest
        if latest is None:
            return None
        if latest.hall_of_fame:
            top = latest.hall_of_fame[0]
            return {"expression": top["expression"], "latex": top.get("latex", ""), "fitness": top["fitness"]}
        return {"expression": latest.best_expression, "latex": latest.best_latex, "fitness": latest.best_fitness}

    @cached_property
    def summary(self) -> dict:
        return self.experiment.progress_summary()

    @cached_property
    def learned(self) -> list:
        """The learned losses, best first (empty until the search has finished)."""
        return list(self.experiment.learned_losses.order_by("rank"))

    @property
    def best(self):
        """The experiment's learned loss: the one its meta-test chose and tested (`final_choice`), else
        the hall of fame's first."""
        tested = [loss for loss in self.learned if loss.meta_test]
        return tested[0] if tested else (self.learned[0] if self.learned else None)

    @property
    def chosen_instead(self):
        """The learned loss the meta-test chose on validation data when it is not the hall of fame's
        first (the best-loss panel then names it first, so the search's best is not taken for it)."""
        best = self.best
        if best is None or best.pk == self.learned[0].pk or self.final_choice is None:
            return None
        return best

    @property
    def final_choice(self) -> dict | None:
        """The meta-test's comparison of the best few losses on validation data, if it made one."""
        record = self.best.meta_test if self.best is not None else None
        choice = record.get("final_choice") if isinstance(record, dict) else None
        return choice if isinstance(choice, dict) and choice.get("candidates") else None

    @cached_property
    def candidates(self) -> list:
        """The candidates of the newest generation that has any (a repeated older event shows no older table)."""
        return list(self.experiment.candidates.of_latest_generation())

    @cached_property
    def pareto(self) -> ParetoChart | None:
        """Size against fitness of every distinct loss evaluated, front highlighted (one query);
        None for a method whose losses are networks (ML3)."""
        if self.running:
            return experiment_chart(self.experiment, running=True)
        return experiment_chart(self.experiment)

    @cached_property
    def workers(self) -> WorkersView | None:
        """The chunks of the generation being evaluated (None: the search does not fan out, or has
        not been prepared yet)."""
        return workers_view(self.experiment)

    @property
    def waiting_for_worker(self) -> bool:
        """A fanned-out search whose chunks no worker holds (the ETA says so instead of a number)."""
        return self.workers is not None and self.workers.waiting_for_worker

    @property
    def method(self) -> catalog.Method:
        """The search's method: the words its panels use ("generation", ML3's "snapshot")."""
        return self.experiment.method

    @cached_property
    def network_weights(self) -> int | None:
        """The weights of every candidate of a network method (ML3); None for expressions."""
        return network_weight_count(self.experiment.config)

    @property
    def loss_shape(self) -> dict | None:
        """The best learned loss's shape, computed by the worker that stored it (None: no loss yet, or
        one the engine could not read)."""
        return self.best.loss_shape if self.best is not None else None

    @cached_property
    def meta_test_view(self) -> str:
        return self.experiment.meta_test_view(self.best)

    @property
    def refines_top_k(self) -> bool:
        """Only local search mode top_k reports a candidate's fitness before local search (candidate_refined)."""
        return self.experiment.config.get("local_search", {}).get("mode") == "top_k"

    @property
    def expects_news(self) -> bool:
        """Whether anything is still to come: an unfinished search, or the meta-test that follows a success.
        The page keeps its socket open exactly as long as this holds."""
        return not self.experiment.is_finished or self.experiment.meta_test_status == MetaTestStatus.RUNNING


def panels_context(experiment: Experiment, running: bool = False) -> dict:
    """The template context of every panel (and of the page that includes them)."""
    return {"experiment": experiment, "dashboard": Dashboard(experiment, running)}


def render_panels(experiment: Experiment, panel_ids=PANEL_IDS, running: bool = False) -> dict[str, str]:
    """Panel id -> its HTML fragment, for the panels named (all of them by default); `running`: the
    Pareto chart from the process's running front (pareto.RunningFronts), the same markup, cheaper."""
    context = panels_context(experiment, running)
    return {panel_id: render_to_string(PANEL_TEMPLATES[panel_id], context) for panel_id in panel_ids}


def chart_series(experiment: Experiment, generations=None) -> dict:
    """The fitness chart's data: the metric, the baseline and one point per generation (every stored
    generation, or the rows given). The browser merges points by generation, so a repeat is harmless."""
    rows = experiment.generations.order_by("index") if generations is None else generations
    baseline = None
    if finite(experiment.baseline_fitness) is not None:
        baseline = {"loss": experiment.baseline_loss, "fitness": experiment.baseline_fitness}
    points = [{"generation": g.index, "best": finite(g.best_fitness), "mean": finite(g.mean_fitness)} for g in rows]
    return {"metric": experiment.metric, "baseline": baseline, "points": points}


def chart_update(experiment: Experiment, event: dict) -> dict | None:
    """What an event adds to the chart: its generation's point, or the baseline once the search started."""
    if event["type"] == "generation_finished":
        return chart_series(experiment, experiment.generations.filter(index=event["generation"]))
    if event["type"] == "search_started":
        return chart_series(experiment, ())
    return None


def update_message(experiment: Experiment | int, event: dict) -> dict | None:
    """`event` as a watcher receives it: its data, plus `panels` (id -> HTML of the panels it changed,
    read from the database) and `chart` (data for the chart, or None). None if the experiment is gone."""
    if not isinstance(experiment, Experiment):
        experiment = Experiment.objects.filter(pk=experiment).first()
        if experiment is None:
            return None
    forget_stale_front(experiment.pk, event)
    running = event["type"] == "generation_finished"
    panels = render_panels(experiment, PANELS_BY_EVENT.get(event["type"], ()), running)
    return {**event, "panels": panels, "chart": chart_update(experiment, event)}


def forget_stale_front(experiment_id: int, event: dict) -> None:
    """A (re)started search, or a candidate of a generation already taken in saved again, ends the
    running front of the experiment: the next generation's chart reads every row once more."""
    if event["type"] == "search_started":
        RUNNING_FRONTS.forget(experiment_id)
    elif event["type"] in ("candidate_evaluated", "candidate_refined") and event.get("generation") is not None:
        RUNNING_FRONTS.forget(experiment_id, event["generation"])


def snapshot_message(experiment: Experiment) -> dict:
    """Everything at once, for a browser that (re)connects: the row, every panel and the whole chart."""
    return {"type": "snapshot", "experiment": experiment.state_dict(), "panels": render_panels(experiment),
            "chart": chart_series(experiment)}


def finite(value: float | None) -> float | None:
    """NaN and infinities as None: JSON has neither (a row stored by an older worker could hold one)."""
    return value if value is not None and math.isfinite(value) else None
