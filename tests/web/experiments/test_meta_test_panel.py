"""The meta-test panel of a finished experiment: the figures at the search's rate and at tuned rates."""

from lfl_web.experiments.models import LearnedLoss
from tests.web.experiments import test_pages

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
    tuned_table = panel[panel.index('id="meta-test-tuned"'):]
    assert "0.316" in tuned_table and "0.0900 ± 0.0000" in tuned_table and "better on 0 of 2 seeds" in tuned_table


def test_the_best_panel_shows_the_best_found_not_the_newest_generations_best(signed_in, make_experiment):
    # CMA-ES (TaylorGLO) and ML3 can get worse from one generation to the next; the hall of fame keeps the best
    experiment = make_experiment(name="cma")
    earlier = test_pages.hall_entry(expression="square(sub(f, y))", fitness=0.05, generation=0)
    earlier["latex"] = r"\left(f - y\right)^{2}"
    test_pages.add_generation(experiment, 0, 0.05, 0.3, hall=[earlier])
    test_pages.add_generation(experiment, 1, 0.09, 0.3, hall=[earlier])  # its own best: cross-entropy at 0.09
    panel = section(signed_in.get(experiment.get_absolute_url()).content.decode(), "best-panel")
    assert "square(sub(f, y))" in panel and "0.0500" in panel and "0.0900" not in panel
