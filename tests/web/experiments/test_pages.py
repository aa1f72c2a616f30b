"""The pages: experiments list, dashboard, leaderboard, cancel and delete, and who may do what.

Rows are small and synthetic (no search runs here)."""

import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from lfl_web.experiments.models import Candidate, Experiment, Generation, LearnedLoss, MetaTestStatus, Status
from search_engine import catalog

from ..conftest import tiny_config

pytestmark = pytest.mark.django_db

CE = "mul(-1, mul(y, log(f)))"  # cross-entropy: 6 nodes, 5 edge weights
SQUARED = "square(sub(f, y))"


def hall_entry(expression=CE, fitness=0.1, size=6, generation=0, weights=None):
    return {"expression": expression, "canonical_key": expression, "latex": r"-y \log f", "fitness": fitness,
            "size": size, "generation": generation, "weights": weights}


def add_generation(experiment, index, best, mean, *, seconds=10.0, rejected=1, cache_hits=0, hall=None):
    return Generation.objects.create(
        experiment=experiment, index=index, best_fitness=best, mean_fitness=mean, median_fitness=mean, evaluated=4,
        rejected=rejected, cache_hits=cache_hits, best_expression=CE, best_latex=r"-y \log f",
        hall_of_fame=hall if hall is not None else [hall_entry(fitness=best, generation=index)], seconds=seconds,
    )


@pytest.fixture
def finished(make_experiment):
    """Build a succeeded experiment with generations and learned losses (hall of fame, best first)."""

    def make(owner=None, *, name="done", fitness=(0.1,), baseline=0.2, baseline_loss="cross_entropy",
             config=None, private=False, weights=None):
        experiment = make_experiment(owner=owner, name=name, private=private, config=config or tiny_config(),
                                     baseline_loss=baseline_loss, baseline_fitness=baseline)
        add_generation(experiment, 0, fitness[0] + 0.05, 0.4)
        add_generation(experiment, 1, fitness[0], 0.3, hall=[hall_entry(fitness=f) for f in fitness])
        LearnedLoss.objects.replace_for(experiment, [hall_entry(fitness=f, weights=weights) for f in fitness])
        Experiment.objects.filter(pk=experiment.pk).update(status=Status.SUCCEEDED, current_generation=2,
                                                           finished_at=timezone.now())
        experiment.refresh_from_db()
        return experiment

    return make


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("root", password="a-long-test-password", is_staff=True))
    return client


# ----------------------------------------------------------------------------- signing in


def test_every_page_and_download_sends_anonymous_visitors_to_sign_in(client, finished):
    experiment = finished()
    loss = experiment.learned_losses.get()
    pages = [reverse("home"), reverse("experiment_list"), reverse("experiment_new"), reverse("leaderboard"),
             reverse("experiment_detail", args=[experiment.pk]), reverse("experiment_results", args=[experiment.pk])]
    pages += [reverse("download_loss", args=[loss.pk, fmt]) for fmt in ("torch", "torchscript", "latex", "json")]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url
    for name in ("experiment_cancel", "experiment_delete"):
        response = client.post(reverse(name, args=[experiment.pk]))
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert Experiment.objects.filter(pk=experiment.pk, status=Status.SUCCEEDED).exists()


def test_the_header_links_to_sign_in_and_out(client, user):
    assert "Sign in" in client.get(reverse("login")).content.decode()
    client.force_login(user)
    page = client.get(reverse("experiment_list")).content.decode()
    assert "Sign out" in page and f'action="{reverse("logout")}"' in page and reverse("leaderboard") in page


# ----------------------------------------------------------------------------- experiments list


def test_the_list_shows_status_task_and_best_fitness(signed_in, finished, other_user, make_experiment):
    finished(name="mine done", fitness=(0.0625,))
    make_experiment(owner=other_user, name="theirs queued")
    make_experiment(owner=other_user, name="theirs secret", private=True)
    page = signed_in.get(reverse("experiment_list")).content.decode()
    assert "mine done" in page and "theirs queued" in page and "theirs secret" not in page
    assert "0.0625" in page and "digits / logistic" in page and "Succeeded" in page and "Queued" in page
    mine = signed_in.get(reverse("experiment_list"), {"scope": "mine"}).content.decode()
    assert "mine done" in mine and "theirs queued" not in mine


def test_an_unknown_scope_is_reported_and_all_are_shown(signed_in, make_experiment):
    make_experiment(name="one")
    page = signed_in.get(reverse("experiment_list"), {"scope": "everyone"}).content.decode()
    assert "Unknown scope" in page and "one" in page


# ----------------------------------------------------------------------------- dashboard


def test_the_dashboard_renders_a_running_search_and_its_stream_address(signed_in, make_experiment):
    experiment = make_experiment(name="live one", baseline_loss="cross_entropy", baseline_fitness=0.3)
    experiment.claim_for_worker("task-1")
    Experiment.objects.filter(pk=experiment.pk).update(total_generations=5, current_generation=2)
    add_generation(experiment, 0, 0.25, 0.5, seconds=30, rejected=2, cache_hits=1)
    add_generation(experiment, 1, 0.2, 0.4, seconds=50, rejected=1, cache_hits=3)
    Candidate.objects.create(experiment=experiment, generation=2, index=0, expression=CE, canonical_key="a",
                             latex=r"-y \log f", fitness=0.21, cache_hit=True, weights=[1.0] * 5)
    Candidate.objects.create(experiment=experiment, generation=2, index=1, expression="div(f, y)", canonical_key="b",
                             rejection_reason="not decreasing in f")
    response = signed_in.get(experiment.get_absolute_url())
    page = response.content.decode()
    assert response.status_code == 200
    assert f'data-ws-path="/ws/experiments/{experiment.pk}/"' in page and "js/dashboard/socket.js" in page
    assert "vendor/katex/katex.min.js" in page and "js/dashboard/chart.js" in page
    assert 'data-expects-news="true"' in page and "live updates need JavaScript" in page
    assert "Running" in page and "2 / 5" in page and "width: 40%" in page
    assert "2 min 00 s" in page  # ETA: 40 s per generation, 3 left
    assert 'id="total-rejected">3<' in page and 'id="total-cache-hits">4<' in page
    assert 'data-latex="-y \\log f"' in page and "0.2000" in page  # best formula and fitness
    assert "rejected: not decreasing in f" in page and "yes" in page  # candidate table
    assert "Cancel search" in page and "cross_entropy: 0.3000" in page
    chart = embedded_json(page, "chart-data")  # what the fitness chart is drawn from
    assert [p["generation"] for p in chart["points"]] == [0, 1] and chart["points"][1]["best"] == 0.2
    assert chart["baseline"] == {"loss": "cross_entropy", "fitness": 0.3}
    assert chart["metric"] == catalog.metric_name("classification")
    assert row_numbers(section(page, "candidates-panel")) == ["0", "1"]
    assert response.context["dashboard"].loss_shape is None


def test_the_dashboard_of_a_finished_search_shows_learned_losses_shape_and_meta_test(signed_in, finished):
    experiment = finished(fitness=(0.1, 0.15), weights=[1.0, 0.5, 1.0, 1.0, 2.0])
    LearnedLoss.objects.filter(experiment=experiment, rank=1).update(meta_test={
        "metric": "error rate", "seeds": [0, 1, 2], "learned": [0.1, 0.11, 0.12], "baseline": [0.2, 0.21, 0.2],
        "learned_mean": 0.11, "learned_std": 0.01, "baseline_mean": 0.2033, "baseline_std": 0.005, "wins": 3,
        "t_statistic": -9.0, "p_value": 0.0121,
    })
    response = signed_in.get(experiment.get_absolute_url())
    page = response.content.decode()
    shape = response.context["dashboard"].loss_shape
    assert shape["kind"] == "classification" and len(shape["p"]) == len(shape["loss_true"]) > 10
    assert 'id="loss-shape-data"' in page and "loss_wrong" in page
    assert "Learned better on 3 of 3 seeds" in page and "0.0121" in page and "0.1100 ± 0.0100" in page
    assert "Meta-testing the best loss" not in page
    loss = experiment.learned_losses.get(rank=1)
    assert reverse("download_loss", args=[loss.pk, "torchscript"]) in page
    assert "Delete" in page and 'id="cancel-form" hidden' in page
    assert 'data-expects-news="false"' in page and "not live: this experiment has finished" in page
    results = signed_in.get(reverse("experiment_results", args=[experiment.pk])).json()
    panels = results["panels"]  # the same fragments as the page, for the browser to swap in
    assert all(html in page for html in panels.values())
    assert row_numbers(panels["hall-of-fame-panel"]) == ["1", "2"]
    assert '<td class="num">0</td><td class="num">5</td>' in panels["hall-of-fame-panel"]  # found in 0, 5 weights
    assert "Learned better on 3 of 3 seeds" in panels["meta-test-panel"]
    assert embedded_json(panels["loss-shape-panel"], "loss-shape-data")["loss_true"] == shape["loss_true"]
    assert [p["generation"] for p in results["chart"]["points"]] == [0, 1]


def section(page: str, element_id: str) -> str:
    start = page.index(f'id="{element_id}"')
    return page[start:page.index("</section>", start)]


def embedded_json(page: str, element_id: str):
    return json.loads(page.split(f'id="{element_id}" type="application/json">')[1].split("</script>")[0])


def row_numbers(html: str) -> list[str]:
    """The first cell of each row of a panel's table (the candidate index or the hall-of-fame rank)."""
    return re.findall(r"<tr[^>]*>\s*<td>(\d+)</td>", html)


def test_a_reload_while_the_best_loss_is_meta_tested_shows_what_runs(signed_in, finished):
    experiment = finished(config=tiny_config(meta_test={"steps": 300, "seeds": 4}))
    Experiment.objects.filter(pk=experiment.pk).update(meta_test_status=MetaTestStatus.RUNNING, meta_test_seeds_done=1)
    page = signed_in.get(experiment.get_absolute_url()).content.decode()
    panel = section(page, "meta-test-panel")
    assert 'id="meta-test-panel" aria-labelledby="meta-test-title">' in panel  # not hidden
    assert "Meta-testing the best loss: 4 seeds × 300 steps, learned vs baseline…" in panel
    assert "1 of 4 seeds done." in panel and 'aria-valuenow="1"' in panel and "width: 25%" in panel
    # the search has finished, but the meta-test's news is still to come: the page keeps its socket
    assert 'data-finished="true"' in page and 'data-expects-news="true"' in page


def test_a_failed_meta_test_is_shown_with_its_error(signed_in, finished):
    experiment = finished()
    Experiment.objects.filter(pk=experiment.pk).update(meta_test_status=MetaTestStatus.FAILED,
                                                       meta_test_error="RuntimeError: <out of memory>")
    panel = section(signed_in.get(experiment.get_absolute_url()).content.decode(), "meta-test-panel")
    assert "The meta-test failed: RuntimeError: &lt;out of memory&gt;" in panel
    assert "Meta-testing the best loss" not in panel and "hidden" not in panel.split(">")[0]


@pytest.mark.parametrize(("status", "message"), [
    (Status.CANCELLED, "Not meta-tested: the search was cancelled"),
    (Status.SUCCEEDED, "The best loss was not meta-tested."),
])
def test_a_search_without_a_meta_test_says_so(signed_in, finished, status, message):
    experiment = finished()
    Experiment.objects.filter(pk=experiment.pk).update(status=status)
    panel = section(signed_in.get(experiment.get_absolute_url()).content.decode(), "meta-test-panel")
    assert message in panel and "Meta-testing the best loss" not in panel


def test_a_running_search_has_no_meta_test_panel_yet(signed_in, make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    page = signed_in.get(experiment.get_absolute_url()).content.decode()
    assert 'id="meta-test-panel" aria-labelledby="meta-test-title" hidden' in page


@pytest.mark.parametrize(("mode", "shown"), [("top_k", True), ("all", False), ("off", False)])
def test_the_fitness_before_local_search_is_a_column_only_where_the_engine_reports_it(signed_in, make_experiment,
                                                                                       mode, shown):
    experiment = make_experiment(config=tiny_config(local_search={"mode": mode}))
    Candidate.objects.create(experiment=experiment, generation=0, index=0, expression=CE, canonical_key="a",
                             fitness=0.2, symbolic_fitness=0.25 if shown else None)
    page = signed_in.get(experiment.get_absolute_url()).content.decode()
    assert ("Before local search" in page) is shown and ("0.2500" in page) is shown


def test_the_dashboard_names_the_evaluation_plan_once_the_search_started(signed_in, make_experiment):
    waiting = make_experiment(status=Status.QUEUED)
    assert 'id="evaluation-plan" title="">—<' in signed_in.get(waiting.get_absolute_url()).content.decode()
    plan = {"strategy": "batched", "chunk": 8, "min_batch": 2, "reason": "measured: P=8 fastest", "device": "cpu"}
    running = make_experiment(status=Status.RUNNING, evaluation_plan=plan)
    page = signed_in.get(running.get_absolute_url()).content.decode()
    assert 'id="evaluation-plan" title="measured: P=8 fastest">batched, up to 8 per program, cpu<' in page


def test_a_private_experiment_is_hidden_from_others(client, other_user, make_experiment, user):
    secret = make_experiment(owner=other_user, private=True)
    client.force_login(user)
    assert client.get(secret.get_absolute_url()).status_code == 404
    assert client.get(reverse("experiment_results", args=[secret.pk])).status_code == 404
    assert client.post(reverse("experiment_cancel", args=[secret.pk])).status_code == 404
    assert Experiment.objects.get(pk=secret.pk).status == Status.QUEUED


def test_others_see_a_shared_dashboard_without_the_buttons(signed_in, other_user, make_experiment):
    shared = make_experiment(owner=other_user, name="shared")
    page = signed_in.get(shared.get_absolute_url()).content.decode()
    assert "shared" in page and "Cancel search" not in page and 'id="delete-form"' not in page


# ----------------------------------------------------------------------------- cancel and delete


def test_the_owner_cancels_a_queued_search(signed_in, make_experiment):
    experiment = make_experiment()
    response = signed_in.post(reverse("experiment_cancel", args=[experiment.pk]), follow=True)
    assert response.redirect_chain[-1][0] == experiment.get_absolute_url()
    assert "Asked the search to stop" in response.content.decode()
    assert Experiment.objects.get(pk=experiment.pk).status == Status.CANCELLED


def test_cancel_and_delete_need_a_post(signed_in, make_experiment):
    experiment = make_experiment()
    assert signed_in.get(reverse("experiment_cancel", args=[experiment.pk])).status_code == 405
    assert signed_in.get(reverse("experiment_delete", args=[experiment.pk])).status_code == 405
    assert Experiment.objects.get(pk=experiment.pk).status == Status.QUEUED


def test_someone_else_can_neither_cancel_nor_delete(signed_in, other_user, make_experiment, finished):
    running = make_experiment(owner=other_user)
    done = finished(owner=other_user)
    assert signed_in.post(reverse("experiment_cancel", args=[running.pk])).status_code == 403
    assert signed_in.post(reverse("experiment_delete", args=[done.pk])).status_code == 403
    assert Experiment.objects.get(pk=running.pk).status == Status.QUEUED and not running.cancel_requested
    assert Experiment.objects.filter(pk=done.pk).exists()


def test_staff_may_cancel_anyones_search(staff_client, make_experiment):
    experiment = make_experiment()
    staff_client.post(reverse("experiment_cancel", args=[experiment.pk]))
    assert Experiment.objects.get(pk=experiment.pk).status == Status.CANCELLED


def test_a_running_search_is_asked_to_stop_and_its_watchers_told(signed_in, make_experiment, monkeypatch):
    from lfl_web.experiments import services  # the page cancels through the services, which announce it

    told = []
    monkeypatch.setattr(services, "broadcast_status", told.append)
    experiment = make_experiment()
    experiment.claim_for_worker("task-1")
    signed_in.post(reverse("experiment_cancel", args=[experiment.pk]))
    experiment.refresh_from_db()
    assert experiment.status == Status.RUNNING and experiment.cancel_requested and told == [experiment.pk]


def test_the_owner_deletes_a_finished_experiment_with_its_rows_and_files(signed_in, finished, settings, tmp_path):
    settings.LFL_UPLOAD_DIR = tmp_path / "uploads"
    settings.LFL_UPLOAD_DIR.mkdir()
    data_file = settings.LFL_UPLOAD_DIR / "0123abcd.csv"
    data_file.write_text("a,label\n1,0\n")
    experiment = finished(config=tiny_config(task={"data_file": str(data_file)}))
    response = signed_in.post(reverse("experiment_delete", args=[experiment.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("experiment_list")
    assert not Experiment.objects.exists() and not Generation.objects.exists() and not LearnedLoss.objects.exists()
    assert not data_file.exists()


def test_a_search_still_running_is_not_deleted(signed_in, make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("task-1")
    response = signed_in.post(reverse("experiment_delete", args=[experiment.pk]), follow=True)
    assert "stop it first" in response.content.decode()
    assert Experiment.objects.filter(pk=experiment.pk).exists()


# ----------------------------------------------------------------------------- leaderboard


@pytest.fixture
def board(finished, other_user, user):
    """Three finished experiments: (fitness, baseline) chosen so that each sort key gives another order."""
    a = finished(owner=user, name="alpha", fitness=(0.10,), baseline=0.12)  # improvement 0.02
    b = finished(owner=other_user, name="beta", fitness=(0.15, 0.16), baseline=0.30)  # improvement 0.15
    c = finished(owner=other_user, name="gamma", fitness=(0.5,), baseline=0.6, baseline_loss="squared_error",
                 config=tiny_config(task={"dataset": "diabetes", "model": "mlp"}))  # MSE, improvement 0.1
    for days, experiment in ((3, a), (2, b), (1, c)):  # alpha is the oldest
        LearnedLoss.objects.filter(experiment=experiment).update(created_at=timezone.now() - timedelta(days=days))
    return a, b, c


def names(response) -> list[str]:
    return [row.experiment.name for row in response.context["rows"]]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [("fitness", ["alpha", "beta", "gamma"]), ("improvement", ["beta", "gamma", "alpha"]),
     ("date", ["gamma", "beta", "alpha"])],
)
def test_the_leaderboard_sorts(signed_in, board, sort, expected):
    assert names(signed_in.get(reverse("leaderboard"), {"sort": sort})) == expected


def test_the_leaderboard_shows_improvement_author_date_and_links(signed_in, board):
    response = signed_in.get(reverse("leaderboard"))
    page = response.content.decode()
    beta = board[1].learned_losses.get(rank=1)
    assert "0.1500" in page and "+50.0%" in page and "grace" in page  # beta: 0.15 vs 0.30
    assert board[1].get_absolute_url() in page
    for fmt in ("torch", "torchscript", "latex", "json"):
        assert reverse("download_loss", args=[beta.pk, fmt]) in page
    assert beta.created_at.strftime("%Y-%m-%d") in page


@pytest.mark.parametrize(
    ("params", "expected"),
    [({"dataset": "diabetes"}, ["gamma"]), ({"metric": "error rate"}, ["alpha", "beta"]),
     ({"model": "mlp"}, ["gamma"]), ({"model": "lenet5"}, []),
     ({"ranks": "all"}, ["alpha", "beta", "beta", "gamma"])],
)
def test_the_leaderboard_filters(signed_in, board, params, expected):
    assert names(signed_in.get(reverse("leaderboard"), params)) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [({"sort": "speed"}, "unknown sort key &#x27;speed&#x27; (ignored); choose one of: fitness, improvement, date"),
     ({"dataset": "imagenet"}, "unknown dataset &#x27;imagenet&#x27;"),
     ({"metric": "accuracy"}, "unknown metric &#x27;accuracy&#x27;")],
)
def test_bad_leaderboard_parameters_get_a_message_not_an_error(signed_in, board, params, message):
    response = signed_in.get(reverse("leaderboard"), params)
    assert response.status_code == 200 and message in response.content.decode()
    assert names(response) == ["alpha", "beta", "gamma"]  # the bad parameter is ignored


def test_the_leaderboard_hides_private_and_unfinished_experiments(signed_in, finished, other_user, make_experiment):
    finished(owner=other_user, name="secret", private=True)
    running = make_experiment(name="running")
    LearnedLoss.objects.replace_for(running, [hall_entry()])
    finished(name="public")
    assert names(signed_in.get(reverse("leaderboard"))) == ["public"]
