"""The dashboard's workers panel: the chunks of the generation being evaluated, who holds each and for
how long, read in one query whatever the search's length, escaped, hidden for a search that runs in
one task, refreshed by the live updates and by its own fragment's address."""

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from lfl_web.experiments.models import Chunk, ChunkStatus, Experiment, Phase, Status, StoredSearch
from lfl_web.experiments.results import workers_panel
from lfl_web.experiments.results.dashboard import PANELS_BY_EVENT, render_panels, update_message
from lfl_web.experiments.results.workers_panel import index_ranges

from ...conftest import tiny_config
from ..live.test_live_updates_cost import rows_read

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)
SCRIPT_ERROR = "ValueError: <script>alert('boom')</script> " + "and a long explanation " * 8


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    """The panel's "now" (elapsed seconds of running chunks) is NOW, so page and fragment agree."""
    monkeypatch.setattr(workers_panel, "timezone", SimpleNamespace(now=lambda: NOW))


def ago(seconds: float):
    return NOW - timedelta(seconds=seconds)


def items(*indices, generation=3):
    return [{"index": i, "expression": f"add(f, {i})", "canonical_key": f"k{i}", "generation": generation}
            for i in indices]


def chunk(experiment, number, indices, generation=3, phase=Phase.EVALUATE, **fields):
    return Chunk.objects.create(experiment=experiment, generation=generation, phase=phase, number=number,
                                items=items(*indices, generation=generation), **fields)


@pytest.fixture
def running(make_experiment):
    """A fanned-out search at generation 3: a chunk in every state (and an older generation's, all done)."""
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    StoredSearch.objects.create(experiment=experiment, state={}, generation=3)
    for number in range(2):
        chunk(experiment, number, [number], generation=2, status=ChunkStatus.DONE, worker="old@vm", attempts=1,
              started_at=ago(100), finished_at=ago(99))
    chunk(experiment, 0, [0, 1, 2], status=ChunkStatus.DONE, worker="w1@vm", attempts=1, started_at=ago(10),
          finished_at=ago(7.5))
    chunk(experiment, 1, [3, 5], status=ChunkStatus.RUNNING, worker="w2@gpu-host.example", attempts=2,
          started_at=ago(42), lease_until=ago(-60))
    chunk(experiment, 2, [4, 7])
    chunk(experiment, 3, [6], status=ChunkStatus.FAILED, worker="<b>w3</b>@vm", attempts=1, started_at=ago(5),
          finished_at=ago(4), error=SCRIPT_ERROR)
    chunk(experiment, 0, [1], phase=Phase.REFINE, status=ChunkStatus.RUNNING, worker="w1@vm", attempts=1,
          started_at=ago(75), lease_until=ago(1))
    return Experiment.objects.get(pk=experiment.pk)


def panel(experiment) -> str:
    return render_panels(Experiment.objects.get(pk=experiment.pk), ("workers-panel",))["workers-panel"]


def rows_of(html: str) -> list[list[str]]:
    """The table's rows as the text of their cells (tags dropped, spaces squeezed)."""
    rows = re.findall(r"<tr class=\"chunk-\w+\">(.*?)</tr>", html, re.S)
    return [[" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in rows]


def test_each_chunk_of_the_current_generation_shows_its_candidates_status_worker_and_time(running):
    assert rows_of(panel(running)) == [
        ["0", "0–2", "done", "w1", "2.5 s"],
        ["1", "3, 5", "running (attempt 2)", "w2", "42 s so far"],
        ["2", "4, 7", "waiting", "—", "—"],
        ["3", "6", "failed: " + "ValueError: &lt;script&gt;alert(&#x27;boom&#x27;)&lt;/script&gt; and a long expla…",
         "&lt;b&gt;w3&lt;/b&gt;", "1.0 s"],
        ["0 refine", "1", "running (lease ran out)", "w1", "1 min 15 s so far"],
    ]


def test_the_summary_counts_chunks_by_state_and_the_workers_holding_them(running):
    html = panel(running)
    assert "generation 3" in html
    summary = re.search(r'<p id="workers-summary">(.*?)</p>', html, re.S).group(1)
    assert summary == "5 chunks: 1 done, 1 failed, 2 running on 2 workers, 1 waiting"
    Chunk.objects.filter(experiment=running, status=ChunkStatus.FAILED).delete()
    Chunk.objects.filter(experiment=running, generation=3, number=2).update(status=ChunkStatus.RUNNING, worker="w1@vm")
    summary = re.search(r'<p id="workers-summary">(.*?)</p>', panel(running), re.S).group(1)
    assert summary == "4 chunks: 1 done, 3 running on 2 workers, 0 waiting"  # w1 holds two


def test_worker_names_and_errors_are_escaped_and_given_in_full_as_titles(running):
    html = panel(running)
    assert "<script>" not in html and "<b>w3" not in html
    assert 'title="&lt;b&gt;w3&lt;/b&gt;@vm"' in html and 'title="w2@gpu-host.example"' in html
    full_error = SCRIPT_ERROR.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#x27;")
    assert f'title="{full_error}"' in html


def test_the_page_shows_the_panel_its_live_updates_and_fragment_bring(client, user, running):
    client.force_login(user)
    fragment = panel(running)
    assert fragment in client.get(running.get_absolute_url()).content.decode()
    assert client.get(reverse("experiment_workers", args=[running.pk])).content.decode() == fragment
    for event_type in ("candidate_evaluated", "candidate_refined", "generation_finished", "experiment_status",
                       "search_started"):
        assert "workers-panel" in PANELS_BY_EVENT[event_type]
        message = update_message(running.pk, {"type": event_type, "generation": 3, "index": 0})
        assert message["panels"]["workers-panel"] == fragment, event_type


def test_a_claim_shows_in_the_fragment_the_page_fetches_again(client, user, running):
    """A worker taking a chunk sends no event: the fragment, fetched again, says who has it now."""
    client.force_login(user)
    url = reverse("experiment_workers", args=[running.pk])
    assert rows_of(client.get(url).content.decode())[2][2:4] == ["waiting", "—"]
    waiting = Chunk.objects.get(experiment=running, generation=3, phase=Phase.EVALUATE, number=2)
    assert waiting.claim("w9@vm", NOW + timedelta(minutes=5))
    assert rows_of(client.get(url).content.decode())[2][2:4] == ["running", "w9"]


def test_the_panel_asks_for_refreshes_only_while_the_experiment_runs(running):
    html = panel(running)
    assert f'data-refresh-url="{reverse("experiment_workers", args=[running.pk])}"' in html
    assert 'data-refresh-seconds="3"' in html
    StoredSearch.objects.filter(experiment=running).update(generation=4)  # the search completed
    Experiment.objects.filter(pk=running.pk).update(status=Status.SUCCEEDED, finished_at=timezone.now())
    html = panel(running)
    assert "data-refresh-url" not in html
    assert "generation 3" in html and "<table" in html and "w1" in html  # who did the last generation's chunks
    Chunk.objects.filter(experiment=running).delete()
    html = panel(running)
    assert "<table" not in html and "No chunk is out: the search has ended." in html


def test_a_generation_without_chunks_yet_says_so(make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    StoredSearch.objects.create(experiment=experiment, state={}, generation=0)
    html = panel(experiment)
    assert "No chunk of this generation has been sent yet." in html and "data-refresh-url" in html


@pytest.mark.parametrize("method", ["taylorglo", "ml3", "evomal"])
def test_an_experiment_without_a_stored_search_has_the_panel_hidden(client, user, make_experiment, method):
    """TaylorGLO and ML3 run in one task; an evolutionary search not prepared yet has no chunks either."""
    experiment = make_experiment(config=tiny_config(method=method))
    experiment.claim_for_worker("t")
    html = panel(experiment)
    assert re.match(r'\s*<section data-panel id="workers-panel" class="panel workers" hidden>\s*</section>\s*$', html)
    client.force_login(user)
    assert html in client.get(experiment.get_absolute_url()).content.decode()


def test_the_fragment_is_for_those_who_may_see_the_experiment(client, user, other_user, make_experiment):
    secret = make_experiment(private=True)
    shared = make_experiment(owner=other_user)
    StoredSearch.objects.create(experiment=secret, state={}, generation=0)
    url = reverse("experiment_workers", args=[secret.pk])
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    client.force_login(other_user)
    assert client.get(url).status_code == 404  # someone else's private experiment
    assert client.get(reverse("experiment_workers", args=[secret.pk + shared.pk + 1])).status_code == 404
    assert client.get(reverse("experiment_workers", args=[shared.pk])).status_code == 200
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200 and 'id="workers-panel"' in response.content.decode()
    assert "no-cache" in response["Cache-Control"]


def search_at_generation(make_experiment, generation: int, chunks_per_generation: int = 4) -> Experiment:
    """A search at `generation` with every earlier generation's chunks stored (done) and its own out."""
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    StoredSearch.objects.create(experiment=experiment, state={}, generation=generation)
    Chunk.objects.bulk_create(
        Chunk(experiment=experiment, generation=g, number=n, items=items(2 * n, 2 * n + 1, generation=g),
              status=ChunkStatus.DONE if g < generation else ChunkStatus.PENDING)
        for g in range(generation + 1) for n in range(chunks_per_generation))
    return Experiment.objects.get(pk=experiment.pk)


def test_the_panel_reads_one_query_of_the_current_generations_chunks_however_long_the_search(make_experiment):
    counts, read = [], []
    for generation in (1, 30):
        experiment = search_at_generation(make_experiment, generation)
        with CaptureQueriesContext(connection) as queries:
            html = panel_of(experiment)
        counts.append(len(queries))
        read.append(rows_read(lambda experiment=experiment: panel_of(experiment)))
        assert len(rows_of(html)) == 4 and "4 chunks: 0 done, 0 running on 0 workers, 4 waiting" in html
    assert counts == [1, 1]
    assert read == [4, 4]  # the current generation's chunks, never the search's


def panel_of(experiment: Experiment) -> str:
    """The panel of an experiment row already read (only the panel's own queries run)."""
    return render_panels(experiment, ("workers-panel",))["workers-panel"]


@pytest.mark.parametrize(("indices", "shown"), [
    ([0, 1, 2], "0–2"), ([4, 7], "4, 7"), ([0, 1, 5], "0, 1, 5"), ([9, 3, 0, 1, 2, 2], "0–3, 9"),
    ([5], "5"), ([], ""), ([10, 11, 12, 14, 15, 16, 17], "10–12, 14–17"),
])
def test_candidates_are_shown_as_runs_of_population_indices(indices, shown):
    assert index_ranges(indices) == shown


# ----------------------------------------------------------------------------- waiting, and an ended search


def eta(experiment) -> str:
    html = render_panels(Experiment.objects.get(pk=experiment.pk), ("progress-panel",))["progress-panel"]
    return re.search(r'<dd id="eta">(.*?)</dd>', html).group(1)


def test_the_eta_says_when_the_chunks_wait_for_a_worker(client, user, running):
    assert eta(running) == "—"  # a worker holds chunk 1 under a live lease: the search is moving
    Chunk.objects.filter(experiment=running, generation=3, number=1, phase=Phase.EVALUATE).update(lease_until=ago(5))
    assert eta(running) == "waiting for a worker"  # its worker was lost: the chunks wait to be sent again
    client.force_login(user)
    url = reverse("experiment_progress", args=[running.pk])
    assert "waiting for a worker" in client.get(url).content.decode()  # what the page fetches again
    waiting = Chunk.objects.get(experiment=running, generation=3, phase=Phase.EVALUATE, number=2)
    assert waiting.claim("w9@vm", NOW + timedelta(minutes=5))
    assert eta(running) == "—" and "waiting for a worker" not in client.get(url).content.decode()


def test_the_progress_panel_is_fetched_again_only_while_a_fanned_out_search_runs(running, make_experiment):
    progress = render_panels(running, ("progress-panel",))["progress-panel"]
    assert f'data-refresh-url="{reverse("experiment_progress", args=[running.pk])}"' in progress
    alone = make_experiment(config=tiny_config(method="taylorglo"))  # runs in one task: no chunks to wait for
    alone.claim_for_worker("t")
    assert "data-refresh-url" not in render_panels(alone, ("progress-panel",))["progress-panel"]
    Experiment.objects.filter(pk=running.pk).update(status=Status.CANCELLED, finished_at=NOW)
    assert "data-refresh-url" not in render_panels(Experiment.objects.get(pk=running.pk), ("progress-panel",))[
        "progress-panel"]


def test_a_cancelled_search_shows_its_unfinished_chunks_as_not_run(running):
    Experiment.objects.filter(pk=running.pk).update(status=Status.CANCELLED, finished_at=NOW)
    html = panel(running)
    summary = re.search(r'<p id="workers-summary">(.*?)</p>', html, re.S).group(1)
    assert summary == "5 chunks: 1 done, 1 failed, 3 not run (the search ended first)"
    assert [row[2].split(" (")[0].split(":")[0] for row in rows_of(html)] == [
        "done", "not run", "not run", "failed", "not run"]
    assert "waiting" not in html and "so far" not in html and "lease ran out" not in html
    assert eta(running) == "—"
