"""A real browser reads a finished experiment's meta-test: the verdict in plain words comes first, then
the comparison of each loss at its own best learning rate, and only then the figure at the search's
learning rate (the paper's protocol); the leaderboard's row says the same in the same order.

The experiment is stored as a worker leaves it (a rescaled cross-entropy that "wins" by half at the
search's rate and ties at tuned rates); `manage.py runstack` serves it to headless Chromium, which
reads the order off the rendered page (where each element is drawn, not only the markup's order).
"""

from pathlib import Path

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from lfl_web.experiments.models import Experiment, LearnedLoss, MetaTestStatus, Status
from lfl_web.redis_server import free_port

from ..browser import Stack, console_log, full_page_screenshot, headless_chromium, missing_browser
from ..conftest import tiny_config
from .test_browser import sign_in, stack_env
from .test_pages import add_generation, hall_entry

pytestmark = pytest.mark.django_db(transaction=True)

SCREENS = Path("/tmp/lfl_screens")
VERDICT = ("The learned loss is no better than cross-entropy at its best learning rate (p = 0.62). It only "
           "rescales cross-entropy: its gradient is 1.56 times cross-entropy's, which a change of learning rate "
           "does as well.")

# Where each part of the meta-test panel is drawn (its top edge on the page) and what it says.
READ_PANEL = """
const panel = document.getElementById("meta-test-panel");
const part = (selector) => {
  const element = panel.querySelector(selector);
  return element ? {top: element.getBoundingClientRect().top + window.scrollY, text: element.innerText.trim(),
                    shown: element.offsetParent !== null} : null;
};
const headings = [...panel.querySelectorAll("h3")].map((h) => ({top: h.getBoundingClientRect().top + window.scrollY,
                                                                  text: h.innerText.trim()}));
return {hidden: panel.hidden, view: document.getElementById("meta-test").dataset.view,
        verdict: part("#meta-test-verdict"), tuned: part("#meta-test-tuned"), fixed: part("#meta-test-fixed"),
        code: panel.querySelector("#meta-test-verdict").dataset.verdict, headings};
"""

# The leaderboard's held-out test cell of the row that links to `arguments[0]`: where its parts are drawn.
READ_ROW = """
const link = [...document.querySelectorAll(".leaderboard td a")].find((a) => a.getAttribute("href") === arguments[0]);
const cell = link.closest("tr").querySelector("td.test");
const top = (element) => element.getBoundingClientRect().top;
const verdict = cell.querySelector(".verdict");
const fixed = cell.querySelector(".fixed-rate");
return {basis: cell.dataset.basis, text: cell.innerText, verdictTop: top(verdict), verdict: verdict.innerText.trim(),
        fixedTop: top(fixed), fixed: fixed.innerText.trim()};
"""


def store_finished_experiment(user) -> Experiment:
    """A succeeded, meta-tested EvoMAL search whose best loss is cross-entropy with every weight 1.56."""
    experiment = Experiment.objects.create(
        owner=user, name="rescaled", config=tiny_config(), status=Status.SUCCEEDED, total_generations=2,
        current_generation=2, baseline_loss="cross_entropy", baseline_fitness=0.2, finished_at=timezone.now(),
        meta_test_status=MetaTestStatus.SUCCEEDED, meta_test_seeds_done=3)
    add_generation(experiment, 0, 0.12, 0.3)
    add_generation(experiment, 1, 0.1, 0.25)
    LearnedLoss.objects.replace_for(experiment, [hall_entry(fitness=0.1)])
    seeds = [1000, 1001, 1002]
    fixed = {"metric": "error rate", "seeds": seeds, "learned": [0.10, 0.11, 0.09], "baseline": [0.20, 0.21, 0.19],
             "learned_mean": 0.10, "learned_std": 0.01, "baseline_mean": 0.20, "baseline_std": 0.01, "wins": 3,
             "t_statistic": -17.3, "p_value": 0.003}
    tuned = {**fixed, "learned": [0.118, 0.121, 0.113], "baseline": [0.117, 0.12, 0.116], "learned_mean": 0.1173,
             "baseline_mean": 0.1177, "wins": 2, "t_statistic": -0.57, "p_value": 0.62, "learned_lr": 0.1,
             "baseline_lr": 0.316, "tried": {}}
    record = {"expression": "mul(-1, mul(y, log(f)))", "steps": 20, **fixed, "tuned_lr": tuned,
              "rescales_baseline": 1.56}
    LearnedLoss.objects.filter(experiment=experiment, rank=1).update(meta_test=record)
    return experiment


def check_the_dashboard(driver, base_url: str, experiment: Experiment) -> None:
    driver.get(f"{base_url}{experiment.get_absolute_url()}")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(READ_PANEL)["view"] == "results")
    panel = driver.execute_script(READ_PANEL)
    assert not panel["hidden"] and panel["code"] == "tie", panel
    assert panel["verdict"]["shown"] and panel["verdict"]["text"] == VERDICT, panel
    assert panel["verdict"]["top"] < panel["tuned"]["top"] < panel["fixed"]["top"], panel  # drawn in that order
    assert [h["text"] for h in panel["headings"]] == [
        "Each at its own best learning rate", "At the search's learning rate (the paper's protocol)"], panel
    assert "0.316" in panel["tuned"]["text"] and "0.1173" in panel["tuned"]["text"], panel
    assert "0.1000" in panel["fixed"]["text"], panel
    print("dashboard screenshot:", full_page_screenshot(driver, SCREENS / "meta_test_verdict.png"))


def check_the_leaderboard(driver, base_url: str, experiment: Experiment) -> None:
    driver.get(f"{base_url}/leaderboard/")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".leaderboard td.test"))
    row = driver.execute_script(READ_ROW, experiment.get_absolute_url())
    assert row["basis"] == "tuned" and row["verdict"] == (
        "no better than cross-entropy at its best learning rate (p = 0.62)"), row
    assert row["text"].index("0.1173") < row["text"].index("no better") < row["text"].index("0.1000"), row
    assert row["verdictTop"] < row["fixedTop"], row
    assert row["fixed"].startswith("at the search's learning rate (the paper's protocol): 0.1000 vs 0.2000"), row
    print("leaderboard screenshot:", full_page_screenshot(driver, SCREENS / "leaderboard_verdict.png"))


def test_a_finished_experiment_shows_the_verdict_and_the_tuned_comparison_first(user, embedded_redis, tmp_path):
    missing = missing_browser()
    if missing:
        pytest.fail(missing, pytrace=False)  # not a skip: CI must run this test
    experiment = store_finished_experiment(user)
    env = stack_env(embedded_redis.url, tmp_path / "var")
    with Stack(env, free_port(), tmp_path / "stack.log") as stack, headless_chromium(tmp_path / "downloads") as driver:
        stack.wait_until_serving(timeout=90)
        sign_in(driver, stack.url, user.username, "a-long-test-password")
        try:
            check_the_dashboard(driver, stack.url, experiment)
            check_the_leaderboard(driver, stack.url, experiment)
        except Exception as failure:
            report = f"--- browser console ---\n{console_log(driver)}\n--- runstack log ---\n{stack.log()}"
            raise AssertionError(f"{failure}\n{report}") from failure
