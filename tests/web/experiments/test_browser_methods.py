"""A real browser starts a TaylorGLO search from the new-experiment form and watches it live.

Headless Chromium signs in, chooses TaylorGLO on the form (EvoMAL's fields go, TaylorGLO's come),
picks the example plugin's data set and model (plugins/lfl-example-plugin: they are offered like the
built-in ones), sets a tiny budget, submits, and follows the dashboard over the websocket while the Celery worker
of `manage.py runstack` runs CMA-ES: the generation counter steps through 1 / 2 to 2 / 2, the
best-loss panel shows a polynomial, the status reaches Succeeded, all without a reload. The stack
and its helpers are those of test_browser.

What the page showed is recorded inside the page by a MutationObserver, so a state that lasted
a fraction of a second is noted however slowly this test polls.
"""

import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from lfl_web.experiments.models import Candidate, Experiment, LearnedLoss, Status
from lfl_web.redis_server import free_port
from search_engine import catalog

from ..browser import Stack, full_page_screenshot, headless_chromium, missing_browser
from .test_browser import (
    SCREENS,
    failure_report,
    fill_form,
    sign_in,
    stack_env,
    submit_form,
    wait_for_the_estimate,
)

pytestmark = pytest.mark.django_db(transaction=True)

#: The machine may be loaded (2 cores shared with other runs): waits are generous, never sleeps.
DEADLINE_SECONDS = 180
POPULATION = 4  # CMA-ES needs at least 4
GENERATIONS = 2

# Field id -> value typed into the form; the advanced part holds max_train and the meta-test's.
# Each generation's population trains 400 steps (about a second on 2 busy cores; 20 steps took
# tens of milliseconds, and the page, which paints only the newest state of a panel per frame,
# went from 0 / 2 straight to 2 / 2), so each counter value stays on screen far longer than a
# loaded browser could take to paint it.
FORM_INPUTS = {
    "id_name": "browser taylorglo", "id_taylorglo_population_size": str(POPULATION),
    "id_taylorglo_generations": str(GENERATIONS), "id_training_steps": "400", "id_max_train": "200",
    "id_meta_test_steps": "20", "id_meta_test_seeds": "1", "id_device": "cpu",
}
FORM_SELECTS = {"id_dataset": "breast_cancer", "id_model": "grid_cnn"}  # the example plugin's

# Fields of the other methods, and TaylorGLO's own (up front, then in the advanced part).
OTHER_METHODS_FIELDS = ("id_population_size", "id_generations", "id_ml3_meta_steps")
OTHER_METHODS_ADVANCED_FIELDS = ("id_top_k", "id_meta_steps", "id_crossover_rate", "id_rejection_steps",
                                 "id_max_height", "id_ml3_inner_steps")
TAYLORGLO_FIELDS = ("id_taylorglo_population_size", "id_taylorglo_generations", "id_training_steps")
TAYLORGLO_ADVANCED_FIELDS = ("id_taylorglo_sigma", "id_taylorglo_mean", "id_hall_of_fame_size", "id_max_train",
                             "id_meta_test_steps", "id_meta_test_seeds", "id_device",
                             "id_evaluation_strategy")  # its proposals are scored in the plan's chunks

# Note each distinct state of the dashboard in window.__lflSeen from now on (a MutationObserver
# fires after every change of the page, including each panel swap); window.__lflMarker is gone
# if anything reloads the page.
RECORD_DASHBOARD = """
window.__lflMarker = "taylorglo";
const seen = window.__lflSeen = [];
const text = (id) => document.getElementById(id).textContent.trim();
function read() {
  const formula = document.querySelector("#best-formula .math");
  return {
    status: text("status"), generation: text("generation-counter"),
    formula: formula ? formula.dataset.latex : null,
    typeset: Boolean(document.querySelector("#best-formula .katex")),
    candidates: document.querySelectorAll("#candidates tr").length - document.querySelectorAll("#candidates td.empty").length,
    connection: document.getElementById("connection").dataset.state,
    metaTest: document.getElementById("meta-test-panel").hidden ? "" : document.getElementById("meta-test").dataset.view,
  };
}
let lastKey = null;
function note() {
  const state = read(), key = JSON.stringify(state);
  if (key !== lastKey) seen.push({...state, at: Math.round(performance.now())});  // at: ms since the page began
  lastKey = key;
}
new MutationObserver(note).observe(document.getElementById("dashboard"),
                                   {subtree: true, childList: true, characterData: true, attributes: true});
note();
"""

READ_SEEN = "return {seen: window.__lflSeen || null, marker: window.__lflMarker || null};"


def shown(driver, field_id: str) -> bool:
    return driver.find_element(By.ID, field_id).is_displayed()


def choose_taylorglo(driver) -> None:
    """Click TaylorGLO's radio: only its fields stay; its CMA-ES settings are in the advanced part."""
    assert all(shown(driver, f) for f in ("id_population_size", "id_generations"))  # EvoMAL, the default
    driver.find_element(By.CSS_SELECTOR, "input[name=method][value=taylorglo]").click()
    assert all(shown(driver, f) for f in TAYLORGLO_FIELDS), [f for f in TAYLORGLO_FIELDS if not shown(driver, f)]
    assert not any(shown(driver, f) for f in OTHER_METHODS_FIELDS), [f for f in OTHER_METHODS_FIELDS if shown(driver, f)]
    assert not shown(driver, "id_taylorglo_sigma")  # the advanced part is still collapsed
    driver.find_element(By.CSS_SELECTOR, "#advanced-settings > summary").click()
    visible = [f for f in OTHER_METHODS_ADVANCED_FIELDS if shown(driver, f)]
    hidden = [f for f in TAYLORGLO_ADVANCED_FIELDS if not shown(driver, f)]
    assert not visible and not hidden, f"other methods' fields shown: {visible}; TaylorGLO's hidden: {hidden}"


def start_taylorglo(driver, base_url: str) -> int:
    """Choose TaylorGLO, type the tiny budget, check the estimate, submit; the dashboard's experiment id."""
    driver.get(f"{base_url}/experiments/new/")
    choose_taylorglo(driver)
    fill_form(driver, FORM_INPUTS, FORM_SELECTS)
    estimate = wait_for_the_estimate(driver, timeout=60)
    label = catalog.METHODS["taylorglo"].label
    assert estimate.count(f"{label}:") == 1 and f"{POPULATION * GENERATIONS} candidate polynomials" in estimate, estimate
    print("form screenshot:", full_page_screenshot(driver, SCREENS / "new_taylorglo_form.png"))
    return submit_form(driver, base_url, timeout=60)


def record_the_dashboard(driver) -> None:
    """Once the dashboard's scripts have run (the indicator left "nojs"), start noting its states."""
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "const c = document.getElementById('connection');"
        "return document.readyState === 'complete' && c !== null && c.dataset.state !== 'nojs';"))
    driver.execute_script(RECORD_DASHBOARD)


def watch_until_finished(driver) -> list[dict]:
    """The states the page noted, once it shows the search ended and the stream closed (the
    meta-test has finished too: nothing more will come)."""
    def ended(d):
        page = d.execute_script(READ_SEEN)
        assert page["marker"] == "taylorglo", "the page was reloaded (window marker lost)"
        last = page["seen"][-1]
        if last["status"] in ("Failed", "Cancelled"):
            raise AssertionError(f"the search ended {last['status']}: {d.find_element(By.ID, 'error').text}")
        return page["seen"] if last["status"] == "Succeeded" and last["connection"] == "finished" else None

    try:
        return WebDriverWait(driver, DEADLINE_SECONDS, poll_frequency=0.25).until(ended)
    except Exception as exc:
        raise AssertionError(f"{exc!r}; states seen: {driver.execute_script(READ_SEEN)['seen']}") from exc


def counter(state: dict) -> tuple[int, int]:
    done, total = (int(n) for n in state["generation"].split("/"))
    return done, total


def check_live_progress(seen: list[dict]) -> None:
    """Generation 1 of 2 was on screen while the search ran, with a formula in the best-loss panel,
    then 2 of 2 once it succeeded; the counter never went back."""
    # the total is TaylorGLO's own generation count from the moment the experiment exists
    assert all(counter(state)[1] == GENERATIONS for state in seen), seen
    started = seen
    done = [counter(state)[0] for state in started]
    assert done == sorted(done) and done[-1] == GENERATIONS, seen
    halfway = [state for state in started if counter(state)[0] == 1]
    assert halfway, f"the counter never showed 1 / {GENERATIONS}: {seen}"
    assert all(state["status"] == "Running" for state in halfway), seen
    assert halfway[0]["formula"] and halfway[0]["candidates"] > 0, halfway[0]  # generation 0's best, live
    succeeded = [state for state in started if state["status"] == "Succeeded"]
    assert succeeded and all(counter(state)[0] == GENERATIONS for state in succeeded), seen
    last = seen[-1]
    assert last["formula"] and last["typeset"] and last["candidates"] == POPULATION, last
    assert any(state["connection"] == "live" for state in seen), seen
    assert last["metaTest"] == "results", last


def check_the_record(pk: int, user, seen: list[dict]) -> None:
    """The stored experiment is the TaylorGLO search the form asked for, and the best-loss panel
    ended on the best polynomial found (the hall of fame's first)."""
    experiment = Experiment.objects.get(pk=pk)
    assert experiment.owner == user and experiment.status == Status.SUCCEEDED, experiment.error
    config = experiment.config
    assert config["method"] == "taylorglo", config
    assert (config["task"]["dataset"], config["task"]["model"]) == ("breast_cancer", "grid_cnn"), config
    assert (config["taylorglo"]["population_size"], config["taylorglo"]["generations"]) == (POPULATION, GENERATIONS)
    assert (config["task"]["max_train"], config["training"]["steps"], config["meta_test"]["seeds"]) == (200, 400, 1)
    assert (experiment.current_generation, experiment.total_generations) == (GENERATIONS, GENERATIONS)
    assert Candidate.objects.filter(experiment=experiment).count() == POPULATION * GENERATIONS
    best = LearnedLoss.objects.get(experiment=experiment, rank=1)
    assert seen[-1]["formula"] == best.latex, (seen[-1], best.latex)


def run_scenario(driver, stack: Stack, user, password: str) -> None:
    began = time.monotonic()
    sign_in(driver, stack.url, user.username, password)
    pk = start_taylorglo(driver, stack.url)
    dashboard_url = driver.current_url
    record_the_dashboard(driver)
    submitted = time.monotonic()
    seen = watch_until_finished(driver)
    print(f"form {submitted - began:.1f} s, dashboard until finished {time.monotonic() - submitted:.1f} s")
    print("dashboard states seen:", *({**s, "formula": (s["formula"] or "")[:30]} for s in seen), sep="\n  ")
    check_live_progress(seen)
    assert driver.current_url == dashboard_url
    print("dashboard screenshot:", full_page_screenshot(driver, SCREENS / "dashboard_taylorglo.png"))
    check_the_record(pk, user, seen)


def test_a_user_starts_a_taylorglo_search_in_the_browser_and_watches_it_live(user, embedded_redis, tmp_path):
    missing = missing_browser()
    if missing:
        pytest.fail(missing, pytrace=False)  # not a skip: CI must run this test
    (SCREENS / "failure.png").unlink(missing_ok=True)  # left by an earlier failed run
    password = "a-long-test-password"  # the `user` fixture's
    env = stack_env(embedded_redis.url, tmp_path / "var")
    with Stack(env, free_port(), tmp_path / "stack.log") as stack, headless_chromium(tmp_path / "downloads") as driver:
        started = time.monotonic()
        stack.wait_until_serving(timeout=90)
        print(f"runstack serving after {time.monotonic() - started:.1f} s")
        try:
            run_scenario(driver, stack, user, password)
        except Exception as failure:
            raise AssertionError(f"{failure}\n{failure_report(driver, stack)}") from failure
