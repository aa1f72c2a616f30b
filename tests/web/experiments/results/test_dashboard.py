"""One renderer for the dashboard: the page and its live updates show the same partials, the cost of
an update does not grow with the search's history, and the browser's scripts hold no sentence of
the pages (they only swap in what the server rendered)."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from lfl_web.experiments.models import Candidate, Experiment, Generation, LearnedLoss, MetaTestStatus, Status
from lfl_web.experiments.results.dashboard import (
    PANEL_IDS,
    PANEL_TEMPLATES,
    PANELS_BY_EVENT,
    render_panels,
    update_message,
)

from ...conftest import tiny_config

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[4]
CE = "mul(-1, mul(y, log(f)))"


def hall_entry(fitness=0.1, generation=0):
    return {"expression": CE, "canonical_key": CE, "latex": r"-y \log f", "fitness": fitness, "size": 6,
            "generation": generation, "weights": [1.0, 0.5, 1.0, 1.0, 2.0]}


def store_generations(experiment, count, population=4):
    """`count` finished generations of `population` candidates each, and the next one half evaluated."""
    for index in range(count):
        Generation.objects.create(
            experiment=experiment, index=index, best_fitness=0.3 - index / 100, mean_fitness=0.4, median_fitness=0.4,
            evaluated=population, rejected=1, cache_hits=1, best_expression=CE, best_latex=r"-y \log f",
            hall_of_fame=[hall_entry(0.3 - index / 100, index)], seconds=2.0)
    Candidate.objects.bulk_create(
        Candidate(experiment=experiment, generation=generation, index=index, expression=f"add(f, {index})",
                  canonical_key=f"k{index}", latex=f"f + {index}", fitness=0.2 + index / 100,
                  rejection_reason="" if index else "not decreasing in f")
        for generation in range(count + 1) for index in range(population if generation < count else population // 2))
    Experiment.objects.filter(pk=experiment.pk).update(current_generation=count, total_generations=count + 5)


def finish(experiment, **changes):
    LearnedLoss.objects.replace_for(experiment, [hall_entry(0.1), hall_entry(0.15)])
    Experiment.objects.filter(pk=experiment.pk).update(status=Status.SUCCEEDED, finished_at=timezone.now(), **changes)


@pytest.fixture
def running(make_experiment):
    experiment = make_experiment(baseline_loss="cross_entropy", baseline_fitness=0.3,
                                 config=tiny_config(local_search={"mode": "top_k"}))
    experiment.claim_for_worker("t")
    store_generations(experiment, 2)
    return Experiment.objects.get(pk=experiment.pk)


def page_of(client, user, experiment) -> str:
    client.force_login(user)
    return client.get(experiment.get_absolute_url()).content.decode()


STATES = {
    "queued": lambda experiment: Experiment.objects.filter(pk=experiment.pk).update(
        status=Status.QUEUED, current_generation=0),
    "running": lambda experiment: None,
    "stopping": lambda experiment: experiment.request_cancel(),
    "meta-testing": lambda experiment: finish(experiment, meta_test_status=MetaTestStatus.RUNNING,
                                              meta_test_seeds_done=1),
    "meta-tested": lambda experiment: (finish(experiment, meta_test_status=MetaTestStatus.SUCCEEDED),
                                       LearnedLoss.objects.filter(experiment=experiment, rank=1).update(meta_test={
                                           "metric": "error rate", "seeds": [0, 1], "learned_mean": 0.1,
                                           "learned_std": 0.0, "baseline_mean": 0.2, "baseline_std": 0.0, "wins": 2,
                                           "steps": 20, "p_value": 0.01})),
    "failed": lambda experiment: experiment.mark_failed("RuntimeError: <boom>"),
}


@pytest.mark.parametrize("state", STATES)
def test_the_page_and_a_live_update_render_the_same_html(client, user, other_user, running, state):
    STATES[state](running)
    experiment = Experiment.objects.get(pk=running.pk)
    fragments = render_panels(experiment)
    assert tuple(fragments) == PANEL_IDS
    for viewer in (user, other_user):  # the owner sees buttons the other does not; the panels are the same
        page = page_of(client, viewer, experiment)
        for panel_id, html in fragments.items():
            assert html in page, f"{panel_id} differs between the page and its live update ({state})"
            assert html.count(f'id="{panel_id}"') == 1 and "csrf" not in html


def test_every_panel_is_one_element_named_by_its_id(running):
    for panel_id, html in render_panels(running).items():
        root = re.match(r"\s*<(\w+)[^>]*>", html)
        assert root and f'id="{panel_id}"' in root.group(0) and "data-panel" in root.group(0), panel_id
        assert html.rstrip().endswith(f"</{root.group(1)}>"), panel_id


def test_each_event_names_panels_that_exist():
    assert {panel for panels in PANELS_BY_EVENT.values() for panel in panels} <= set(PANEL_IDS)


EVENTS = {
    "search_started": {"generations": 7, "start_generation": 0},
    "candidate_evaluated": {"index": 1},
    "candidate_refined": {"index": 1},
    "generation_finished": {},
    "search_finished": {"status": "completed"},
    "experiment_status": {},
    "meta_test_progress": {"seeds_done": 1, "seeds": 2},
    "meta_test_finished": {"learned_loss": 1},
}


def update_queries(experiment, event_type) -> int:
    event = {"type": event_type, "generation": experiment.current_generation - 1, **EVENTS[event_type]}
    with CaptureQueriesContext(connection) as queries:
        message = update_message(experiment.pk, event)
    assert set(message["panels"]) == set(PANELS_BY_EVENT[event_type])
    return len(queries)


@pytest.mark.parametrize("event_type", EVENTS)
def test_the_queries_behind_an_update_do_not_grow_with_the_history(make_experiment, event_type):
    assert set(EVENTS) == set(PANELS_BY_EVENT)
    counts = []
    for generations in (2, 20):
        experiment = make_experiment(baseline_loss="cross_entropy", baseline_fitness=0.3)
        experiment.claim_for_worker("t")
        store_generations(experiment, generations)
        finish(experiment, meta_test_status=MetaTestStatus.RUNNING)  # every panel has something to show
        counts.append(update_queries(Experiment.objects.get(pk=experiment.pk), event_type))
    assert counts[0] == counts[1], f"{event_type}: {counts[0]} queries with 2 generations, {counts[1]} with 20"


def test_a_generation_update_brings_one_chart_point_however_long_the_search(make_experiment):
    experiment = make_experiment(baseline_loss="cross_entropy", baseline_fitness=0.3)
    store_generations(experiment, 20)
    message = update_message(experiment.pk, {"type": "generation_finished", "generation": 19})
    assert message["chart"]["points"] == [{"generation": 19, "best": pytest.approx(0.11), "mean": 0.4}]


# ----------------------------------------------------------------------------- no sentence twice


class TextChunks(HTMLParser):
    """The words a template shows: its text and its human-readable attributes, cut at every template
    tag or variable (what is left between them is written in the template itself)."""

    ATTRIBUTES = ("title", "aria-label", "placeholder", "alt")

    def __init__(self):
        super().__init__()
        self.chunks = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and (name in self.ATTRIBUTES or name.endswith(("-label", "-text"))):
                self.chunks.extend(split_at_template_code(value))

    def handle_data(self, data):
        self.chunks.extend(split_at_template_code(data))


def split_at_template_code(text: str) -> list[str]:
    parts = re.split(r"\{[{%#].*?[}%#]\}|\x00", text)
    return [" ".join(part.split()) for part in parts if part.strip()]


def template_sentences() -> set[str]:
    """What the dashboard's templates say, in pieces of at least two words or one long word."""
    chunks = set()
    for name in ("experiments/detail.html", *PANEL_TEMPLATES.values()):
        source = (REPO / "templates" / name).read_text()
        # template code inside a tag would confuse the HTML parser: mark it, then cut there
        parser = TextChunks()
        parser.feed(re.sub(r"\{[{%#].*?[}%#]\}", "\x00", source))
        chunks.update(chunk for chunk in parser.chunks if " " in chunk or len(chunk) >= 5)
    return {chunk.strip(" ·:;,(") for chunk in chunks if re.search(r"[A-Za-z]{2}", chunk)}


def javascript_strings() -> list[str]:
    strings = []
    for script in (REPO / "static" / "js").rglob("*.js"):
        strings += re.findall(r'"((?:[^"\\\n]|\\.)*)"|\'((?:[^\'\\\n]|\\.)*)\'|`([^`]*)`', script.read_text())
    return [re.sub(r"\$\{[^}]*\}", "\x00", "".join(groups)) for groups in strings]  # not the code in `${}`


def test_the_scripts_hold_none_of_the_sentences_of_the_templates():
    sentences = template_sentences()
    assert {"No candidate has been evaluated yet.", "Cancel search", "Stopping…", "training…",
            "Per-sample loss against the residual f − y.", "Learned better on"} <= sentences  # the reader works
    strings = javascript_strings()
    assert any("lfl:panels" in s for s in strings)  # and so does this one
    duplicated = sorted(sentence for sentence in sentences if any(sentence in s for s in strings))
    assert duplicated == [], f"written both in a template and in static/js: {duplicated}"


def test_the_old_all_in_one_script_is_gone():
    assert not (REPO / "static" / "js" / "dashboard.js").exists()
    assert sorted(p.name for p in (REPO / "static" / "js" / "dashboard").glob("*.js")) == [
        "chart.js", "panels.js", "socket.js"]


# ----------------------------------------------------------------------------- the generation, said once


def generation_words(experiment) -> tuple[str, str]:
    """(the progress panel's generation counter, the candidates table's heading), as text."""
    panels = render_panels(Experiment.objects.get(pk=experiment.pk), ("progress-panel", "candidates-panel"))
    counter = re.search(r"<dt>([^<]*)</dt><dd id=\"generation-counter\">([^<]*)</dd>", panels["progress-panel"])
    heading = re.search(r"<h2>(.*?)</h2>", panels["candidates-panel"], re.S).group(1)
    return f"{counter.group(1)}: {counter.group(2)}", " ".join(re.sub(r"<[^>]+>", "", heading).split())


def test_the_generation_counter_and_the_candidates_heading_agree(running):
    # 2 generations done (0 and 1), generation 2 half evaluated
    assert generation_words(running) == ("Generations done: 2 / 7", "Candidates of generation 2 (being evaluated)")
    Experiment.objects.filter(pk=running.pk).update(current_generation=3)  # generation 2 finished, 3 not begun
    assert generation_words(running) == ("Generations done: 3 / 7", "Candidates of generation 2 (finished)")
    Experiment.objects.filter(pk=running.pk).update(current_generation=2, status=Status.CANCELLED)
    assert generation_words(running)[1] == "Candidates of generation 2 (stopped before it finished)"
