"""The leaderboard across methods: the method column and filter (page and API), and the ranking by
the held-out meta-test, losses not meta-tested after the meta-tested ones by validation fitness.

Rows are small and synthetic (no search runs here)."""

import html
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from lfl_web.api.models import ApiToken
from lfl_web.experiments.models import Experiment, LearnedLoss, Status, TransferRun
from search_engine import catalog

from ...conftest import tiny_config

pytestmark = pytest.mark.django_db

CE = "mul(-1, mul(y, log(f)))"


def meta_test_record(learned_mean, baseline_mean) -> dict:
    """What the worker stores on a meta-tested loss (scoring.metatest.Comparison.to_dict and more)."""
    return {"expression": CE, "steps": 20, "metric": "error rate", "seeds": [1000, 1001],
            "learned": [learned_mean, learned_mean], "baseline": [baseline_mean, baseline_mean],
            "learned_mean": learned_mean, "learned_std": 0.0, "baseline_mean": baseline_mean, "baseline_std": 0.0,
            "wins": 0, "t_statistic": None, "p_value": None}


@pytest.fixture
def finished_loss(make_experiment):
    """A succeeded experiment of `method` with learned losses of the given validation fitnesses; its
    best carries the meta-test `test` = (learned mean, baseline mean) when given."""

    def make(name, method, fitness=(0.1,), test=None, dataset="digits"):
        experiment = make_experiment(name=name, config=tiny_config(method=method, task={"dataset": dataset}),
                                     baseline_loss="cross_entropy", baseline_fitness=0.2)
        LearnedLoss.objects.replace_for(experiment, [{"expression": CE, "fitness": f, "size": 6} for f in fitness])
        Experiment.objects.filter(pk=experiment.pk).update(status=Status.SUCCEEDED, finished_at=timezone.now())
        if test is not None:
            experiment.learned_losses.filter(rank=1).update(meta_test=meta_test_record(*test))
        return experiment

    return make


@pytest.fixture
def board(finished_loss):
    """Six losses: meta-tested ones whose test improvement orders them otherwise than their fitness,
    one whose meta-test diverged, and two not meta-tested."""
    finished_loss("even", "evomal", fitness=(0.05,), test=(0.20, 0.20))  # best fitness, test +0%
    finished_loss("network", "ml3", fitness=(0.30,), test=(0.10, 0.20))  # worst fitness, test +50%
    finished_loss("polynomial", "taylorglo", fitness=(0.10,))  # not meta-tested
    finished_loss("symbolic", "gplfl", fitness=(0.08, 0.09))  # not meta-tested
    finished_loss("regression", "evomal", fitness=(0.50,), test=(0.90, 1.00), dataset="diabetes")  # test +10%
    finished_loss("diverged", "evomal", fitness=(0.06,), test=(None, 0.20))  # a seed diverged: no mean


def names(response) -> list[str]:
    return [row.experiment.name for row in response.context["rows"]]


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def test_the_leaderboard_ranks_by_the_held_out_meta_test_then_the_rest_by_fitness(signed_in, board):
    response = signed_in.get(reverse("leaderboard"))
    assert names(response) == ["network", "regression", "even", "diverged", "symbolic", "polynomial"]
    assert response.context["choices"]["sort"] == "meta_test"
    page = response.content.decode()
    assert "losses that have not been meta-tested" in page and "ranked by validation fitness" in page
    assert "+50.0%" in page and "0.1000 <small" in page and "not meta-tested" in page


def test_the_other_sorts_still_order_by_validation_fitness_improvement_and_date(signed_in, board):
    by_fitness = names(signed_in.get(reverse("leaderboard"), {"sort": "fitness"}))
    assert by_fitness == ["even", "diverged", "symbolic", "polynomial", "network", "regression"]
    assert "ranked by validation fitness" not in signed_in.get(reverse("leaderboard"), {"sort": "fitness"}).content.decode()
    assert names(signed_in.get(reverse("leaderboard"), {"sort": "date"}))[0] == "diverged"  # the newest


def test_every_entry_of_an_experiment_but_its_meta_tested_best_ranks_as_not_meta_tested(signed_in, board):
    assert names(signed_in.get(reverse("leaderboard"), {"ranks": "all"})) == [
        "network", "regression", "even", "diverged", "symbolic", "symbolic", "polynomial"]


@pytest.mark.parametrize(("method", "expected"), [
    ("ml3", ["network"]), ("taylorglo", ["polynomial"]), ("gplfl", ["symbolic"]),
    ("evomal", ["regression", "even", "diverged"]),
])
def test_the_method_filter(signed_in, board, method, expected):
    response = signed_in.get(reverse("leaderboard"), {"method": method})
    assert names(response) == expected
    assert f'<option value="{method}" selected>' in response.content.decode()


def test_the_method_column_names_each_method_and_an_unknown_filter_is_reported(signed_in, board):
    page = signed_in.get(reverse("leaderboard")).content.decode()
    for method, label in (("evomal", "EvoMAL"), ("gplfl", "GP-LFL"), ("ml3", "ML3"), ("taylorglo", "TaylorGLO")):
        assert f'<td class="method" data-method="{method}">{label}</td>' in page
    response = signed_in.get(reverse("leaderboard"), {"method": "sgd"})
    assert "unknown method &#x27;sgd&#x27; (ignored); choose one of: evomal, gplfl, ml3, taylorglo" in (
        response.content.decode())
    assert len(names(response)) == 6


@pytest.mark.parametrize(("test", "improvement"), [
    ((0.15, 0.20), 0.25), ((0.30, 0.20), -0.5), ((0.0, 0.0), 0.0),
    ((0.1, 0.0), None),  # the baseline is perfect on the test data: no ratio, ranked after the defined ones
    ((0.1, None), None),  # the baseline diverged on a seed
])
def test_the_test_improvement_is_the_relative_drop_of_the_mean_test_metric(finished_loss, test, improvement):
    finished_loss("one", "evomal", test=test)
    row = LearnedLoss.objects.with_test_improvement().get()
    assert row.untested == 0 and (row.test_learned, row.test_baseline) == test
    assert row.test_improvement == (None if improvement is None else pytest.approx(improvement))


# ----------------------------------------------------------------------------- the API


@pytest.fixture
def api(client, user):
    _, key = ApiToken.objects.issue(user, "tests")
    return lambda **params: client.get("/api/leaderboard/", params, HTTP_AUTHORIZATION=f"Token {key}")


def test_the_api_ranks_like_the_page_and_gives_each_rows_method(api, board):
    losses = api().json()["losses"]
    assert [e["experiment_name"] for e in losses] == ["network", "regression", "even", "diverged", "symbolic",
                                                      "polynomial"]
    network = losses[0]
    assert (network["method"], network["method_label"]) == ("ml3", "ML3")
    assert network["meta_test_improvement"] == pytest.approx(0.5) and network["meta_test"]["learned_mean"] == 0.1
    assert losses[-1]["meta_test_improvement"] is None and losses[-1]["method"] == "taylorglo"


def test_the_api_filters_by_method_and_refuses_an_unknown_one(api, board):
    assert [e["experiment_name"] for e in api(method="gplfl").json()["losses"]] == ["symbolic"]
    assert [e["experiment_name"] for e in api(method="evomal", sort="fitness").json()["losses"]] == [
        "even", "diverged", "regression"]
    refused = api(method="sgd")
    assert refused.status_code == 400
    assert refused.json()["errors"]["method"] == f"must be one of {', '.join(catalog.METHODS)}, got 'sgd'"


def test_the_page_offers_every_sort_key_as_a_tab(signed_in, board):
    from lfl_web.experiments.models import LEADERBOARD_ORDERINGS
    from lfl_web.experiments.results.leaderboard import LEADERBOARD_SORTS

    assert sorted(key for key, _ in LEADERBOARD_SORTS) == sorted(LEADERBOARD_ORDERINGS)
    page = signed_in.get(reverse("leaderboard"), {"method": "evomal"}).content.decode()
    for key, text in LEADERBOARD_SORTS:
        assert f'href="?method=evomal&amp;sort={key}"' in page and f">{text}</a>" in page


# ----------------------------------------------------------------------------- each at its best learning rate


def tuned_record(fixed: tuple, tuned: tuple, p_value: float) -> dict:
    """A meta-test record with (learned, baseline) means at the search's rate and at tuned rates."""
    return {**meta_test_record(*fixed), "p_value": 0.001,
            "tuned_lr": {**meta_test_record(*tuned), "p_value": p_value, "learned_lr": 0.1, "baseline_lr": 0.316}}


@pytest.fixture
def tuned_board(finished_loss):
    """"rescaled" wins by half at the search's rate and ties at tuned rates (a rescaled cross-entropy);
    "shape" wins by a tenth at tuned rates; "old" was meta-tested before tuning was the default."""
    for name, record in (("rescaled", tuned_record((0.10, 0.20), (0.20, 0.20), p_value=0.6)),
                         ("shape", tuned_record((0.19, 0.20), (0.18, 0.20), p_value=0.01)),
                         ("old", meta_test_record(0.19, 0.20))):
        finished_loss(name, "evomal").learned_losses.filter(rank=1).update(meta_test=record)


def test_the_ranking_compares_each_loss_at_its_best_learning_rate_where_it_can(signed_in, tuned_board):
    rows = list(LearnedLoss.objects.ranked_by("meta_test"))
    assert [r.experiment.name for r in rows] == ["shape", "old", "rescaled"]  # +10%, +5% (search's rate), 0%
    assert [r.test_tuned for r in rows] == [1, 0, 1]
    assert [round(r.test_improvement, 3) for r in rows] == [0.1, 0.05, 0.0]
    assert [round(r.fixed_improvement, 3) for r in rows] == [0.05, 0.05, 0.5]
    assert [r.verdict.code for r in rows] == ["better", "untested", "tie"]

    page = html.unescape(signed_in.get(reverse("leaderboard")).content.decode())
    assert "each loss at its own best learning rate" in page[page.index('id="ranking-note"'):]
    before = page[:page.index(">rescaled</a>")]  # its row, up to the experiment's link
    cell = before[before.rindex('<td class="num test'):]
    leading = cell.index("0.2000 <small")  # the tuned figure, +0.0%
    verdict = cell.index("no better than cross-entropy at its best learning rate (p = 0.6)")
    paper = cell.index("at the search's learning rate (the paper's protocol): 0.1000 vs 0.2000 (+50.0%)")
    assert leading < verdict < paper and 'data-basis="tuned"' in cell
    assert "better" not in cell[:cell.index(">")]  # +0.0% and p = 0.6: not shown as better
    before = page[:page.index(">shape</a>")]
    shape = before[before.rindex('<td class="num test'):]
    assert "better" in shape[:shape.index(">")] and "better than cross-entropy at its best learning rate" in shape
    before = page[:page.index(">old</a>")]
    old_cell = before[before.rindex('<td class="num test'):]
    assert 'data-basis="search_rate"' in old_cell
    assert "not compared with cross-entropy at its best learning rate" in old_cell


def test_the_api_leads_with_the_tuned_comparison_and_keeps_the_old_fields(api, tuned_board):
    losses = api().json()["losses"]
    assert [e["experiment_name"] for e in losses] == ["shape", "old", "rescaled"]
    rescaled = losses[-1]
    assert list(rescaled)[:7] == ["id", "meta_test_improvement", "meta_test_improvement_basis",
                                  "meta_test_improvement_at_search_rate", "verdict", "tuned_comparison",
                                  "fixed_rate_comparison"]
    assert rescaled["meta_test_improvement"] == pytest.approx(0.0) and rescaled["meta_test_improvement_basis"] == "tuned"
    assert rescaled["meta_test_improvement_at_search_rate"] == pytest.approx(0.5)
    assert rescaled["verdict"]["code"] == "tie" and rescaled["verdict"]["sentence"].startswith(
        "The learned loss is no better than cross-entropy at its best learning rate")
    assert rescaled["tuned_comparison"] == {
        "learned_lr": 0.1, "baseline_lr": 0.316, "metric": "error rate", "learned_mean": 0.2, "learned_std": 0.0,
        "baseline_mean": 0.2, "baseline_std": 0.0, "wins": 0, "t_statistic": None, "p_value": 0.6, "seeds": 2,
        "relative_improvement": 0.0}
    assert rescaled["fixed_rate_comparison"]["relative_improvement"] == pytest.approx(0.5)
    assert rescaled["meta_test"]["tuned_lr"]["learned_mean"] == 0.2  # the whole record, as before
    old = losses[1]
    assert (old["meta_test_improvement_basis"], old["tuned_comparison"], old["verdict"]["code"]) == (
        "search_rate", None, "untested")


# ----------------------------------------------------------------------------- what the rows show


def row_of(page: str, name: str) -> str:
    """The group of rows of experiment `name`'s loss (its figures and its transfers)."""
    start = page.rindex('<tbody class="loss-group">', 0, page.index(f">{name}</a>"))
    return page[start:page.index("</tbody>", start)]


def test_a_change_that_shows_as_none_is_neither_red_nor_signed(signed_in, finished_loss):
    finished_loss("tie", "evomal", fitness=(0.2000000001,), test=(0.2000000001, 0.2))  # the baseline's 0.2, to 1e-10
    row = row_of(signed_in.get(reverse("leaderboard")).content.decode(), "tie")
    classes = {name for names in re.findall(r'class="([^"]*)"', row) for name in names.split()}
    assert not classes & {"worse", "better"} and "-0.0%" not in row and "(0.0%)" in row
    assert "0.2000 <small" in row and "-1e-10 (0.0%)" in row  # the difference is printed, not coloured


def test_the_transfers_of_a_loss_fold_into_one_line_below_its_figures(signed_in, finished_loss):
    loss = finished_loss("travelled", "evomal", test=(0.1, 0.2)).learned_losses.get(rank=1)
    for dataset, model, improvement in (("digits", "mlp", 0.25), ("digits", "lenet5", -0.1),
                                        ("digits28", "mlp", 0.0), ("mnist", "lenet5", 0.5)):
        TransferRun.objects.create(learned_loss=loss, dataset=dataset, model=model, status="succeeded", seeds=2,
                                   steps=20, seeds_done=2, improvement=improvement,
                                   record=meta_test_record(0.2 * (1 - improvement), 0.2))
    row = row_of(signed_in.get(reverse("leaderboard")).content.decode(), "travelled")
    figures, transfers = row.split('<tr class="transfers-row">')
    assert "digits / mlp" not in figures  # no column of transfers beside the figures
    summary = transfers[transfers.index("<summary"):transfers.index("</summary>")]
    assert summary.count('class="transfer-chip') == 3 and "+1 more" in summary  # a few, and how many more
    assert '<span class="transfer-chip better">digits / mlp +25.0%</span>' in summary
    assert '<span class="transfer-chip worse">digits / lenet5 -10.0%</span>' in summary
    assert '<span class="transfer-chip ">digits28 / mlp 0.0%</span>' in summary
    assert transfers.count("<li data-status=\"succeeded\">") == 4  # every run in full, once opened


def test_a_loss_whose_meta_test_is_running_says_so(client, user, finished_loss):
    client.force_login(user)
    experiment = finished_loss("testing now", "evomal")
    Experiment.objects.filter(pk=experiment.pk).update(meta_test_status="running")
    page = client.get(reverse("leaderboard")).content.decode()
    assert "meta-test running" in page and "not meta-tested" not in page
