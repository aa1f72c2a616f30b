"""A real browser on the real stack: headless Chromium signs in, fills the new-experiment form, and
watches the dashboard fill in over the websocket while a Celery worker runs the search; then it
downloads the learned loss as a torch module.

The stack is `manage.py runstack` (daphne + a Celery worker, as `make run` starts them) on a free
port, with the embedded Redis and the test database file shared by the server, the worker and this
test. Screenshots go to /tmp/lfl_screens/ for a person to look at.
"""

import os
import re
import secrets
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from lfl_web.experiments.models import Experiment, LearnedLoss, Status
from lfl_web.redis_server import free_port

from ..browser import Stack, console_log, full_page_screenshot, headless_chromium, missing_browser
from ..databases import shared_database_url

pytestmark = pytest.mark.django_db(transaction=True)

SCREENS = Path("/tmp/lfl_screens")
LIVE_DEADLINE_SECONDS = 120
GENERATIONS = 3
POPULATION = 4

# Field id -> value typed into the new-experiment form (population 4 x 3 generations, tiny training).
FORM_INPUTS = {
    "id_name": "browser e2e", "id_max_train": "300", "id_population_size": str(POPULATION),
    "id_generations": str(GENERATIONS), "id_training_steps": "20", "id_top_k": "1", "id_meta_steps": "3",
    "id_device": "cpu", "id_meta_test_steps": "30", "id_meta_test_seeds": "2",
}
FORM_SELECTS = {"id_dataset": "digits", "id_model": "logistic", "id_local_search_mode": "top_k"}

# What the dashboard shows right now (read in one go, so the fields agree with each other).
READ_DASHBOARD = """
const text = (id) => document.getElementById(id).textContent.trim();
const torch = document.querySelector("#hall-of-fame a[href$='/torch/']");
return {
  status: text("status"), generation: text("generation-counter"),
  connection: document.getElementById("connection").dataset.state,
  candidates: document.querySelectorAll("#candidates tr").length - document.querySelectorAll("#candidates td.empty").length,
  torch: torch ? torch.href : null, marker: window.__lflMarker || null,
  queuedNotice: document.querySelectorAll(".messages .queued-notice").length,
  metaTest: document.getElementById("meta-test-panel").hidden ? "" : document.getElementById("meta-test").dataset.view,
};
"""

# Fetch a link inside the page (with the browser's session cookie) and hand back its text.
FETCH_TEXT = """
const [url, done] = arguments;
fetch(url, {credentials: "same-origin"})
  .then((r) => r.text().then((text) => done({status: r.status, text,
        disposition: r.headers.get("Content-Disposition"), type: r.headers.get("Content-Type")})))
  .catch((error) => done({status: null, text: String(error)}));
"""


def stack_env(redis_url: str, var_dir: Path) -> dict[str, str]:
    """runstack's environment: this test's database file and Redis, a known admin password."""
    drop = ("DATABASE_URL", "REDIS_URL", "LFL_ADMIN_PASSWORD", "LFL_CHANNEL_LAYER", "LFL_PORT", "LFL_HOST")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DATABASE_URL=shared_database_url(), REDIS_URL=redis_url,
        LFL_VAR_DIR=str(var_dir), LFL_ADMIN_USER="admin", LFL_ADMIN_PASSWORD=secrets.token_urlsafe(16),
        DJANGO_SETTINGS_MODULE="lfl_web.settings", PYTHONUNBUFFERED="1",
    )
    return env


def sign_in(driver, base_url: str, username: str, password: str) -> None:
    driver.get(f"{base_url}/accounts/login/")
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    WebDriverWait(driver, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "header .account span")
        and d.find_element(By.CSS_SELECTOR, "header .account span").text == username
    )


def choose_method_and_open_the_advanced_part(driver) -> None:
    """The form shows only the chosen method's fields (ML3's, then EvoMAL's again), and its
    advanced part opens on a click on its summary."""

    def shown(field_id: str) -> bool:
        return driver.find_element(By.ID, field_id).is_displayed()

    def choose(method: str) -> None:
        driver.find_element(By.CSS_SELECTOR, f"input[name=method][value={method}]").click()

    assert shown("id_population_size") and not shown("id_ml3_meta_steps")  # EvoMAL, the default
    choose("ml3")
    assert shown("id_ml3_meta_steps") and not shown("id_population_size")
    choose("evomal")
    assert shown("id_population_size") and not shown("id_ml3_meta_steps") and not shown("id_top_k")  # collapsed
    driver.find_element(By.CSS_SELECTOR, "#advanced-settings > summary").click()
    assert shown("id_top_k") and not shown("id_ml3_inner_steps")


def fill_form(driver, inputs: dict[str, str], selects: dict[str, str]) -> None:
    """Type each value into its field (by id, replacing what was there) and pick each option."""
    for field_id, value in inputs.items():
        field = driver.find_element(By.ID, field_id)
        field.clear()
        field.send_keys(value)
    for field_id, value in selects.items():
        Select(driver.find_element(By.ID, field_id)).select_by_value(value)


def wait_for_the_estimate(driver, timeout: float = 15) -> str:
    """The work estimate follows the fields: wait until it shows them (it can change the page's
    height); returns its text."""
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.ID, "work-estimate").get_attribute("data-pending") is None)
    return driver.find_element(By.ID, "work-estimate").text


def submit_form(driver, base_url: str, timeout: float = 15) -> int:
    """Submit the new-experiment form once its estimate is current; returns the experiment id of
    the dashboard it leads to (AssertionError with the form's errors if it stays)."""
    wait_for_the_estimate(driver, timeout)
    driver.find_element(By.CSS_SELECTOR, "form.experiment-form button[type=submit]").click()
    dashboard = re.compile(re.escape(base_url) + r"/experiments/(\d+)/$")
    WebDriverWait(driver, max(30, timeout)).until(
        lambda d: dashboard.match(d.current_url) or d.find_elements(By.CSS_SELECTOR, ".errorlist"))
    errors = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".errorlist, .form-errors")]
    assert dashboard.match(driver.current_url), f"the form was not accepted: {errors}"
    return int(dashboard.match(driver.current_url).group(1))


def submit_tiny_experiment(driver, base_url: str) -> int:
    """Fill the new-experiment form, screenshot it, submit; returns the experiment id of the dashboard."""
    driver.get(f"{base_url}/experiments/new/")
    choose_method_and_open_the_advanced_part(driver)
    fill_form(driver, FORM_INPUTS, FORM_SELECTS)
    assert f"{POPULATION * GENERATIONS} candidates" in wait_for_the_estimate(driver)
    print("form screenshot:", full_page_screenshot(driver, SCREENS / "new_experiment_form.png"))
    return submit_form(driver, base_url)


def watch_until_finished(driver) -> list[dict]:
    """Every distinct state the dashboard shows, until it says Succeeded and offers the download."""
    seen: list[dict] = []
    deadline = time.monotonic() + LIVE_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        state = driver.execute_script(READ_DASHBOARD)
        if not seen or state != seen[-1]:
            seen.append(state)
        if state["status"] in ("Failed", "Cancelled"):
            raise AssertionError(f"the search ended {state['status']}: {driver.find_element(By.ID, 'error').text}")
        if state["status"] == "Succeeded" and state["torch"]:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"the dashboard did not show a finished search within {LIVE_DEADLINE_SECONDS} s: {seen}")


def generation_of(state: dict) -> int:
    done, total = (int(n) for n in state["generation"].split("/"))
    assert total == GENERATIONS, state
    return done


def check_live_updates(seen: list[dict]) -> None:
    first, last = seen[0], seen[-1]
    assert first["marker"] == 1 and first["status"] in ("Queued", "Running"), seen
    generations = [generation_of(state) for state in seen]
    assert generations[0] < GENERATIONS and generations[-1] == GENERATIONS, seen
    assert generations == sorted(generations), f"the generation counter went backwards: {seen}"
    assert any(state["connection"] == "live" for state in seen), seen
    assert any(state["status"] == "Running" for state in seen), seen
    assert last["candidates"] == POPULATION, last
    assert last["marker"] == 1, f"the page was reloaded (window marker lost): {seen}"
    # the form's "… is queued" notice goes once the live status says otherwise
    assert all(state["queuedNotice"] == 0 for state in seen if state["status"] != "Queued"), seen


def wait_for_meta_test(driver) -> None:
    """After the search, the worker meta-tests the best loss; its numbers replace the indicator live."""
    WebDriverWait(driver, LIVE_DEADLINE_SECONDS).until(
        lambda d: d.execute_script(READ_DASHBOARD)["metaTest"] in ("results", "failed"))
    state = driver.execute_script(READ_DASHBOARD)
    assert state["metaTest"] == "results", driver.find_element(By.ID, "meta-test").text
    assert "Learned better on" in driver.find_element(By.ID, "meta-test").text
    assert state["marker"] == 1 and state["queuedNotice"] == 0, state


def check_the_page_hangs_up(driver) -> None:
    """Once nothing more can come, the socket closes and the indicator goes dark; the owner's buttons
    follow the status the server rendered (cancel gone, delete offered)."""
    indicator = driver.find_element(By.ID, "connection")
    WebDriverWait(driver, 30).until(lambda d: indicator.get_attribute("data-state") == "finished")
    assert indicator.text == driver.find_element(By.ID, "connection-finished").text == (
        "not live: this experiment has finished")
    assert "live" not in indicator.get_attribute("class").split(), indicator.get_attribute("class")
    assert driver.find_element(By.ID, "delete-form").is_displayed()
    assert not driver.find_element(By.ID, "cancel-form").is_displayed()


def download_torch_module(driver, url: str) -> str:
    response = driver.execute_async_script(FETCH_TEXT, url)
    assert response["status"] == 200, response
    assert response["disposition"].startswith("attachment") and '.py"' in response["disposition"], response
    return response["text"]


def check_torch_module(source: str) -> None:
    """The file is a standalone module whose LearnedLoss scores a batch of logits like CrossEntropyLoss."""
    assert "class LearnedLoss(torch.nn.Module)" in source, source[:2000]
    code = compile(source, "learned_loss.py", "exec")
    import torch

    namespace: dict = {"__name__": "learned_loss"}
    exec(code, namespace)  # the module this test just downloaded from its own server
    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    value = namespace["LearnedLoss"]()(logits, labels)
    assert value.shape == () and torch.isfinite(value), value


def run_scenario(driver, stack: Stack, user, password: str) -> None:
    sign_in(driver, stack.url, user.username, password)
    pk = submit_tiny_experiment(driver, stack.url)
    dashboard_url = driver.current_url
    driver.execute_script("window.__lflMarker = 1;")  # gone if anything reloads the page

    seen = watch_until_finished(driver)
    print("dashboard states seen:", *seen, sep="\n  ")
    check_live_updates(seen)
    wait_for_meta_test(driver)
    check_the_page_hangs_up(driver)
    assert driver.current_url == dashboard_url
    print("dashboard screenshot:", full_page_screenshot(driver, SCREENS / "dashboard_finished.png"))

    source = download_torch_module(driver, seen[-1]["torch"])
    check_torch_module(source)
    assert driver.execute_script("return window.__lflMarker") == 1  # fetch() did not navigate away

    experiment = Experiment.objects.get(pk=pk)
    assert experiment.owner == user and experiment.status == Status.SUCCEEDED, experiment.error
    assert experiment.current_generation == GENERATIONS
    assert experiment.config["search"]["population_size"] == POPULATION
    local_search = experiment.config["local_search"]
    assert (local_search["mode"], local_search["top_k"], local_search["meta_steps"]) == ("top_k", 1, 3)
    best = LearnedLoss.objects.get(experiment=experiment, rank=1)

    long_loss = store_a_long_formula(user)
    driver.get(f"{stack.url}/leaderboard/")
    links = driver.find_elements(By.CSS_SELECTOR, f"a[href='/losses/{best.pk}/download/torch/']")
    assert links, "the leaderboard does not offer the learned loss"
    check_formulas_stay_on_one_line(driver, long_loss)
    print("leaderboard screenshot:", full_page_screenshot(driver, SCREENS / "leaderboard.png"))


LONG_LATEX = r" + ".join([r"\log\left(\left|f - y\right| + 1\right) \cdot y^{2}"] * 6)


def store_a_long_formula(user) -> LearnedLoss:
    """A finished experiment whose learned loss is far wider than the leaderboard's Loss column."""
    experiment = Experiment.objects.create(
        owner=user, name="long formula", config={"task": {"dataset": "digits", "model": "mlp"}},
        status=Status.SUCCEEDED, baseline_loss="cross_entropy", baseline_fitness=0.5)
    LearnedLoss.objects.replace_for(experiment, [{"expression": "long(" + "f, " * 40 + "y)", "latex": LONG_LATEX,
                                                  "fitness": 0.4}])
    return LearnedLoss.objects.get(experiment=experiment)


def check_formulas_stay_on_one_line(driver, long_loss: LearnedLoss) -> None:
    """Each formula keeps to one line of the Loss column: a long one scrolls within its cell, and its
    title holds it as text."""
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "td.loss .katex"))  # typeset
    cells = driver.execute_script("""
      return [...document.querySelectorAll(".leaderboard td.loss .one-line")].map((cell) => {
        const tops = [...cell.querySelectorAll(".katex-html > *")].map((part) => part.getBoundingClientRect().top);
        return {title: cell.title, drop: Math.max(...tops) - Math.min(...tops), parts: tops.length,
                em: parseFloat(getComputedStyle(cell).fontSize), overflows: cell.scrollWidth > cell.clientWidth};
      });""")
    # a second line would start at least a line (> 1 em) lower than the first
    assert len(cells) == 2 and all(cell["parts"] and cell["drop"] < cell["em"] for cell in cells), cells
    [long_cell] = [cell for cell in cells if cell["title"] == long_loss.expression]
    assert long_cell["overflows"], cells  # it would have wrapped: it scrolls instead


def failure_report(driver, stack: Stack) -> str:
    parts = [f"url: {driver.current_url}"]
    try:
        parts.append(f"screenshot: {full_page_screenshot(driver, SCREENS / 'failure.png')}")
        parts.append("--- page text ---\n" + driver.find_element(By.TAG_NAME, "main").text[-3000:])
    except Exception as exc:  # the report must not hide the failure
        parts.append(f"(could not read the page: {exc!r})")
    parts.append("--- browser console ---\n" + console_log(driver))
    parts.append("--- runstack log ---\n" + stack.log())
    return "\n".join(parts)


def test_a_user_starts_a_search_in_the_browser_and_watches_it_live(user, embedded_redis, tmp_path):
    missing = missing_browser()
    if missing:
        pytest.fail(missing, pytrace=False)  # not a skip: CI must run this test
    (SCREENS / "failure.png").unlink(missing_ok=True)  # left by an earlier failed run
    password = "a-long-test-password"  # the `user` fixture's
    env = stack_env(embedded_redis.url, tmp_path / "var")
    with Stack(env, free_port(), tmp_path / "stack.log") as stack, headless_chromium(tmp_path / "downloads") as driver:
        stack.wait_until_serving(timeout=90)
        try:
            run_scenario(driver, stack, user, password)
        except Exception as failure:
            raise AssertionError(f"{failure}\n{failure_report(driver, stack)}") from failure
