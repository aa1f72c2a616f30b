"""The meta-test panel of a finished experiment: the verdict in plain words and the figures at tuned
rates first, then the figures at the search's rate (the paper's protocol)."""

import html

import pytest

from lfl_web.experiments.models import Experiment, LearnedLoss
from tests.web.experiments import test_pages

from ...conftest import tiny_config

finished, signed_in, section = test_pages.finished, test_pages.signed_in, test_pages.section  # fixtures, helper


def test_a_meta_test_at_tuned_rates_shows_both_figures(signed_in, finished):
    experiment = finished(fitness=(0.1, 0.15))
    comparison = {"metric": "error rate", "seeds": [0, 1], "learned": [0.1, 0.12], "baseline": [0.2, 0.2],
                  "learned_mean": 0.11, "learned_std": 0.01, "baseline_mean": 0.2, "baseline_std": 0.0, "wins": 2,
                  "t_statistic": None, "p_value": None}
    tuned = {**comparison, "learned": [0.09, 0.09], "learned_mean": 0.09, "learned_std": 0.0,
             "baseline_mean": 0.08, "wins": 0, "learned_lr": 0.1, "baseline_lr": 0.316, "tried": {}}
    LearnedLoss.objects.filter(experiment=experiment, rank=1).update(meta_test={**comparison, "tuned_lr": tuned})
    panel = section(signed_in.get(experiment.get_absolute_url()).content.decode(), "meta-test-panel")
    assert "Learned better on 2 of 2 seeds" in panel and "Each at its own best learning rate" in panel
    tuned_table = panel[panel.index('id="meta-test-tuned"'):panel.index('id="meta-test-fixed"')]
    assert "0.316" in tuned_table and "0.0900 ± 0<" in tuned_table and "better on 0 of 2 seeds" in tuned_table


def test_the_best_panel_shows_the_best_found_not_the_newest_generations_best(signed_in, make_experiment):
    # CMA-ES (TaylorGLO) and ML3 can get worse from one generation to the next; the hall of fame keeps the best
    experiment = make_experiment(name="cma")
    earlier = test_pages.hall_entry(expression="square(sub(f, y))", fitness=0.05, generation=0)
    earlier["latex"] = r"\left(f - y\right)^{2}"
    test_pages.add_generation(experiment, 0, 0.05, 0.3, hall=[earlier])
    test_pages.add_generation(experiment, 1, 0.09, 0.3, hall=[earlier])  # its own best: cross-entropy at 0.09
    panel = section(signed_in.get(experiment.get_absolute_url()).content.decode(), "best-panel")
    assert "square(sub(f, y))" in panel and "0.0500" in panel and "0.0900" not in panel


# ----------------------------------------------------------------------------- the verdict leads

COMPARISON = {"metric": "error rate", "seeds": [0, 1], "learned": [0.1, 0.12], "baseline": [0.2, 0.2],
              "learned_mean": 0.11, "learned_std": 0.01, "baseline_mean": 0.2, "baseline_std": 0.0, "wins": 2,
              "t_statistic": None, "p_value": 0.004}


def tuned(**changes) -> dict:
    """A comparison at tuned rates, where the learned loss's edge at the search's rate is gone."""
    return {**COMPARISON, "learned": [0.09, 0.09], "learned_mean": 0.09, "learned_std": 0.0, "baseline_mean": 0.08,
            "wins": 0, "learned_lr": 0.1, "baseline_lr": 0.316, "tried": {}, "p_value": 0.3, **changes}


def panel_of(client, experiment, meta_test) -> str:
    """The meta-test panel's text once the best loss carries `meta_test` (HTML entities read back)."""
    LearnedLoss.objects.filter(experiment=experiment, rank=1).update(meta_test=meta_test)
    return html.unescape(section(client.get(experiment.get_absolute_url()).content.decode(), "meta-test-panel"))


def test_the_verdict_and_the_tuned_figures_lead_the_papers_protocol_follows(signed_in, finished):
    panel = panel_of(signed_in, finished(), {**COMPARISON, "tuned_lr": tuned()})
    verdict = panel.index("The learned loss is no better than cross-entropy at its best learning rate (p = 0.3).")
    at_tuned = panel.index("Each at its own best learning rate")
    at_search_rate = panel.index("At the search's learning rate (the paper's protocol)")
    assert verdict < at_tuned < panel.index('id="meta-test-tuned"') < at_search_rate < panel.index('id="meta-test-fixed"')
    assert 'data-verdict="tie"' in panel  # a 45% "win" at the search's rate (p = 0.004) is no win at tuned rates


@pytest.mark.parametrize(("at_tuned", "said"), [
    (tuned(learned_mean=0.05, p_value=0.01), "The learned loss is better than cross-entropy at its best learning "
                                             "rate (p = 0.01)."),
    (tuned(learned_mean=0.12, p_value=0.02), "The learned loss is worse than cross-entropy at its best learning "
                                             "rate (p = 0.02)."),
])
def test_a_significant_difference_at_tuned_rates_is_said_plainly(signed_in, finished, at_tuned, said):
    assert said in panel_of(signed_in, finished(), {**COMPARISON, "tuned_lr": at_tuned})


def test_a_loss_that_only_rescales_the_baseline_is_named(signed_in, finished):
    panel = panel_of(signed_in, finished(), {**COMPARISON, "tuned_lr": tuned(), "rescales_baseline": 1.56})
    assert "It only rescales cross-entropy: its gradient is 1.56 times cross-entropy's" in panel


def test_a_meta_test_stored_before_tuning_was_the_default_says_it_was_not_tuned(signed_in, finished):
    panel = panel_of(signed_in, finished(), COMPARISON)  # such a record has no "tuned_lr"
    assert 'data-verdict="untested"' in panel and 'id="meta-test-tuned"' not in panel
    assert "was not compared with cross-entropy at its best learning rate" in panel
    assert panel.index("not compared") < panel.index("At the search's learning rate (the paper's protocol)")
    assert "Learned better on 2 of 2 seeds" in panel


def test_a_regression_names_squared_error(signed_in, finished):
    experiment = finished(baseline_loss="squared_error",
                          config=tiny_config(task={"dataset": "diabetes", "model": "mlp"}))
    at_tuned = {**tuned(), "metric": "MSE"}
    panel = panel_of(signed_in, experiment, {**COMPARISON, "metric": "MSE", "tuned_lr": at_tuned})
    assert "The learned loss is no better than squared error at its best learning rate (p = 0.3)." in panel


# ----------------------------------------------------------------------------- the final choice


def test_the_loss_the_final_choice_tested_is_the_experiments_and_the_comparison_is_shown(signed_in, finished):
    experiment = finished(fitness=(0.1, 0.15))  # two learned losses, ranks 1 and 2
    second = LearnedLoss.objects.get(experiment=experiment, rank=2)
    choice = {"chosen": 2, "steps": 40, "baseline": {"lr": 0.316, "validation": 0.05, "tried": []},
              "candidates": [{"rank": 1, "expression": "first(f)", "lr": 0.1, "validation": 0.04, "tried": []},
                             {"rank": 2, "expression": second.expression, "lr": 1.0, "validation": 0.02, "tried": []}]}
    LearnedLoss.objects.filter(pk=second.pk).update(
        meta_test={**COMPARISON, "tuned_lr": tuned(p_value=0.01, learned_mean=0.05), "rank": 2, "final_choice": choice})
    page = html.unescape(signed_in.get(experiment.get_absolute_url()).content.decode())
    panel = section(page, "meta-test-panel")
    table = panel[panel.index('id="meta-test-final-choice"'):panel.index('id="meta-test-tuned"')]
    assert "#2 (chosen)" in table and "#1 (chosen)" not in table and "first(f)" in table
    assert "0.0200" in table and "Baseline" in table
    assert panel.index("Chosen on validation data") < panel.index("Each at its own best learning rate")
    from lfl_web.experiments.models.findings import LearnedLoss as Rows

    board = Rows.objects.ranked_by("meta_test")
    assert [loss.rank for loss in board if loss.experiment_id == experiment.pk] == [2]  # its learned loss


def test_without_a_final_choice_the_first_loss_is_the_experiments(signed_in, finished):
    experiment = finished(fitness=(0.1, 0.15))
    panel = panel_of(signed_in, experiment, {**COMPARISON, "tuned_lr": tuned()})
    assert "Chosen on validation data" not in panel
    board = LearnedLoss.objects.ranked_by("meta_test")
    assert [loss.rank for loss in board if loss.experiment_id == experiment.pk] == [1]


def test_the_papers_protocol_heading_names_the_rate_the_search_trained_at(signed_in, finished):
    experiment = finished()
    experiment.config = {**experiment.config, "training": {**experiment.config.get("training", {}), "lr": 0.05}}
    experiment.save()
    panel = panel_of(signed_in, experiment, {**COMPARISON, "search_lr": 0.15811388300841897, "tuned_lr": tuned()})
    assert "At the search's learning rate, 0.158 (the paper's protocol)" in panel
    assert "the baseline's best rate near the configured 0.05" in panel  # why it is not the configured rate


@pytest.mark.parametrize(("phase", "said", "bar"), [
    ("final_choice", "Choosing the learned loss", False),
    ("search_rate", "seeds done at the search's rate", True),
    ("tuning", "Picking the learned loss's and the baseline's best learning rates", False),
    ("tuned_seeds", "seeds done at the tuned rates", True),
])
def test_a_running_meta_test_says_which_part_it_is_in(signed_in, finished, phase, said, bar):
    experiment = finished()
    Experiment.objects.filter(pk=experiment.pk).update(meta_test_status="running", meta_test_phase=phase,
                                                       meta_test_seeds_done=1)
    page = html.unescape(section(signed_in.get(experiment.get_absolute_url()).content.decode(), "meta-test-panel"))
    assert said in page and ('role="progressbar"' in page) == bar
    assert not bar or "1 of " in page  # the part's seeds, counted from its start


def test_the_best_panel_names_the_loss_the_meta_test_chose_before_the_searchs_best(signed_in, finished):
    experiment = finished(fitness=(0.1, 0.15))
    losses = list(LearnedLoss.objects.filter(experiment=experiment).order_by("rank"))
    LearnedLoss.objects.filter(pk=losses[1].pk).update(expression="square(sub(y, f))", meta_test={
        **COMPARISON, "tuned_lr": tuned(learned_mean=0.05, p_value=0.01),
        "final_choice": {"chosen": losses[1].rank, "candidates": [
            {"rank": losses[0].rank, "expression": losses[0].expression, "lr": 0.1, "validation": 0.2},
            {"rank": losses[1].rank, "expression": "square(sub(y, f))", "lr": 0.316, "validation": 0.1}]}})
    panel = html.unescape(section(signed_in.get(experiment.get_absolute_url()).content.decode(), "best-panel"))
    chosen = panel.index(f"The learned loss is hall of fame #{losses[1].rank}, chosen by the meta-test")
    assert chosen < panel.index("square(sub(y, f))") < panel.index("The search's best by fitness")
    assert panel.index("The search's best by fitness") < panel.index(losses[0].expression, chosen)

    LearnedLoss.objects.filter(pk=losses[1].pk).update(meta_test=None)  # the first is tested: nothing to add
    LearnedLoss.objects.filter(pk=losses[0].pk).update(meta_test={**COMPARISON, "tuned_lr": tuned()})
    assert "chosen by the meta-test" not in section(signed_in.get(experiment.get_absolute_url()).content.decode(),
                                                    "best-panel")
