"""The Pareto panel on the dashboard: drawn from the database for the page, sent again when a
generation finishes (not per candidate), one query whatever the history, nothing for ML3, and no
torch in the web process to draw it."""

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from lfl_web.experiments.live.recording import record_event
from lfl_web.experiments.models import Candidate, Experiment
from lfl_web.experiments.results import dashboard, pareto
from lfl_web.experiments.results.dashboard import PANELS_BY_EVENT, render_panels
from search_engine.evolution.events import CandidateEvaluated, GenerationFinished

from ...conftest import tiny_config, watch_group

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[4]
CE = "mul(-1, mul(y, log(f)))"
#: (generation, expression, canonical key, latex, fitness): sizes 1, 4, 6 (twice) and 9, one rejected.
ROWS = [
    (0, "square(sub(y, f))", "sq", r"(y - f)^{2}", 0.30),
    (0, CE, "ce", r"-y \log f", 0.20),
    (1, CE, "ce", r"-y \log f", 0.15),  # the same loss again, better: its one point is this one
    (1, "add(mul(y, f), div(1, add(f, -1)))", "big", r"f y + \frac{1}{f - 1}", 0.25),  # beaten by ce
    (1, "f", "lone", "f", 0.90),
    (1, "sqrt(y)", "rejected", r"\sqrt{y}", None),
]


def store(experiment, rows=ROWS):
    Candidate.objects.bulk_create(
        Candidate(experiment=experiment, generation=generation, index=index, expression=expression,
                  canonical_key=key, latex=latex, fitness=fitness,
                  rejection_reason="" if fitness is not None else "not decreasing in f")
        for index, (generation, expression, key, latex, fitness) in enumerate(rows))


def pareto_html(experiment) -> str:
    return render_panels(Experiment.objects.get(pk=experiment.pk), ("pareto-panel",))["pareto-panel"]


def circles(html: str, group: str) -> list[str]:
    """The hover titles of the circles in the SVG group of that class, in drawing order."""
    body = re.search(rf'<g class="{group}">(.*?)</g>', html, re.S).group(1)
    return re.findall(r"<circle [^>]*><title>(.*?)</title></circle>", body, re.S)


@pytest.fixture
def searched(make_experiment):
    experiment = make_experiment(baseline_loss="cross_entropy", baseline_fitness=0.5)
    store(experiment)
    return experiment


def test_the_page_shows_every_distinct_loss_once_and_highlights_the_front(client, user, searched):
    client.force_login(user)
    page = client.get(searched.get_absolute_url()).content.decode()
    html = pareto_html(searched)
    assert html in page  # the page and the live update draw the same markup
    assert 'id="pareto-panel" class="panel pareto">' in html  # shown: a configuration without a method is EvoMAL
    front, dominated = circles(html, "pareto-front"), circles(html, "pareto-dominated")
    assert [re.search(r"size (\d+)", t).group(1) for t in front] == ["1", "4", "6"]  # simplest first
    assert len(dominated) == 1 and "add(mul(y, f), div(1, add(f, -1)))" in dominated[0]
    assert "sqrt(y)" not in html  # a rejected candidate has no fitness to plot
    ce = front[2]
    assert CE in ce and r"-y \log f" in ce and "0.1500" in ce and "generation 1" in ce and "0.2000" not in ce
    # the front as a staircase through its three points: across to the next size, then down
    assert re.search(r'class="pareto-line" d="M[\d.]+,[\d.]+(H[\d.]+V[\d.]+){2}"', html)
    assert "4 distinct losses" in html and "<strong>3</strong> on the front" in html
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td>", html)
    assert rows == ["1", "4", "6"]  # the table of the front, typeset by the page's math script
    assert 'data-latex="(y - f)^{2}">square(sub(y, f))</span>' in html
    assert 'class="pareto-baseline"' in html and "baseline cross_entropy" in html


@pytest.mark.parametrize("method", ["evomal", "gplfl", "taylorglo"])
def test_every_symbolic_method_gets_the_chart(make_experiment, method):
    experiment = make_experiment(config=tiny_config(method=method))
    store(experiment)
    assert len(circles(pareto_html(experiment), "pareto-front")) == 3


def test_a_network_method_has_an_empty_hidden_panel_and_no_query(make_experiment):
    experiment = Experiment.objects.get(pk=make_experiment(config=tiny_config(method="ml3")).pk)
    store(experiment)
    with CaptureQueriesContext(connection) as queries:
        html = render_panels(experiment, ("pareto-panel",))["pareto-panel"]
    assert len(queries) == 0
    assert re.fullmatch(r'\s*<section data-panel id="pareto-panel" class="panel pareto" hidden>\s*</section>\s*', html)


def test_before_any_fitness_the_panel_says_it_fills_in(make_experiment):
    experiment = make_experiment()
    store(experiment, [(0, "sqrt(y)", "rejected", "", None)])
    html = pareto_html(experiment)
    assert "<svg" not in html and "redrawn as each generation finishes" in html


def test_the_panel_costs_one_query_however_many_candidates(make_experiment):
    counts = []
    for generations in (1, 30):
        experiment = Experiment.objects.get(pk=make_experiment().pk)
        store(experiment, [(g, f"add(f, {'mul(y, ' * (i % 4)}y{')' * (i % 4)})", f"k{g}_{i}", "", 0.1 + i / 10 + g)
                           for g in range(generations) for i in range(6)])
        with CaptureQueriesContext(connection) as queries:
            render_panels(experiment, ("pareto-panel",))
        counts.append(len(queries))
    assert counts == [1, 1]


def test_a_long_search_draws_the_best_points_off_the_front_and_says_how_many_it_left_out(make_experiment,
                                                                                         monkeypatch):
    monkeypatch.setattr(dashboard, "experiment_chart", functools.partial(pareto.experiment_chart, limit=2))
    experiment = make_experiment()
    store(experiment, [(0, "f", "lone", "f", 0.1)] + [(0, "add(f, y)", f"k{i}", "", 0.2 + i / 10) for i in range(5)])
    html = pareto_html(experiment)
    dominated = circles(html, "pareto-dominated")
    assert len(dominated) == 2 and "0.2000" in dominated[0] and "0.3000" in dominated[1]
    assert "6 distinct losses" in html and "3 more, the worst, are not drawn" in html


def test_the_front_is_redrawn_when_a_generation_finishes_not_per_candidate(make_experiment):
    experiment = make_experiment(baseline_loss="cross_entropy", baseline_fitness=0.5)
    assert "pareto-panel" not in PANELS_BY_EVENT["candidate_evaluated"]
    received = watch_group(experiment.pk)
    record_event(experiment.pk, CandidateEvaluated(
        generation=0, index=0, expression="square(sub(f, y))", canonical_key="se", latex=r"(f - y)^{2}",
        fitness=0.25, rejection_reason=None, cache_hit=False))
    record_event(experiment.pk, GenerationFinished(
        generation=0, best_fitness=0.25, mean_fitness=0.25, median_fitness=0.25, evaluated=1, rejected=0,
        cache_hits=0, best_expression="square(sub(f, y))", best_latex=r"(f - y)^{2}", hall_of_fame=(), seconds=1.0))
    candidate_message, generation_message = received()
    assert "pareto-panel" not in candidate_message["panels"]
    [title] = circles(generation_message["panels"]["pareto-panel"], "pareto-front")
    assert "square(sub(f, y))" in title and "size 4" in title and "0.2500" in title


def test_drawing_the_panel_does_not_load_torch():
    code = ("import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'lfl_web.settings'); import django; "
            "django.setup(); import lfl_web.experiments.results.dashboard, lfl_web.experiments.results.pareto as p; "
            "p.pareto_chart(p.pareto_view([('k', 'mul(y, f)', '', 0.1, 0)])); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
