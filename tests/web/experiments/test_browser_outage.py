"""A real browser through an outage of Redis (the channel layer): the dashboard says that live
updates are interrupted and that it reconnects, then catches up without a reload once Redis is back.

The stack is `manage.py runstack` pointed at this test's embedded Redis (REDIS_URL), so the test
itself kills and restarts it (the stack restarts only a Redis it started; see test_redis_restart).
"""

import re
import time
from pathlib import Path

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from lfl_web.experiments.models import Candidate, Experiment, Status
from lfl_web.redis_server import free_port

from ..browser import Stack, console_log, full_page_screenshot, headless_chromium, missing_browser
from ..conftest import tiny_config
from .test_browser import sign_in, stack_env

pytestmark = pytest.mark.django_db(transaction=True)

SCREENS = Path("/tmp/lfl_screens")

READ_INDICATOR = """
const indicator = document.getElementById("connection");
const shown = [...indicator.children].filter((sentence) => !sentence.hidden).map((sentence) => sentence.id);
return {state: indicator.dataset.state, shown, text: indicator.innerText.trim(), kind: indicator.className,
        status: document.getElementById("status").textContent.trim(), marker: window.__lflMarker || null,
        candidates: document.querySelectorAll("#candidates tr").length - document.querySelectorAll("#candidates td.empty").length};
"""


def indicator_becomes(driver, state: str, timeout: float) -> dict:
    """The first reading of the page that shows `state` (it may change right after: a countdown ends)."""
    def reading(d):
        seen = d.execute_script(READ_INDICATOR)
        return seen if seen["state"] == state else None

    return WebDriverWait(driver, timeout).until(reading)


def run_outage(driver, stack: Stack, redis_server, experiment: Experiment) -> None:
    driver.get(f"{stack.url}{experiment.get_absolute_url()}")
    driver.execute_script("window.__lflMarker = 1;")  # gone if anything reloads the page
    live = indicator_becomes(driver, "live", 30)
    assert live["shown"] == ["connection-live"] and "live" in live["kind"].split(), live

    redis_server.process.kill()
    redis_server.process.wait()
    down = indicator_becomes(driver, "interrupted", 30)
    assert down["shown"] == ["connection-interrupted"] and "offline" in down["kind"].split(), down
    assert re.fullmatch(r"live updates interrupted: reconnecting in \d+ s, then the page catches up", down["text"]), down
    print("interrupted screenshot:", full_page_screenshot(driver, SCREENS / "dashboard_interrupted.png"))

    # what happens meanwhile is saved, and its news lost
    Experiment.objects.filter(pk=experiment.pk).update(status=Status.RUNNING)
    Candidate.objects.create(experiment=experiment, generation=0, index=0, expression="sub(f, y)",
                             canonical_key="f - y", latex="f - y", fitness=0.25)
    redis_server.restart()
    back = indicator_becomes(driver, "live", 45)  # the backoff has grown to a few seconds by now
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(READ_INDICATOR)["candidates"] == 1)
    back = driver.execute_script(READ_INDICATOR)
    assert back["status"] == "Running" and back["marker"] == 1, back  # caught up, without a reload


def test_the_dashboard_says_live_updates_are_interrupted_and_catches_up_when_redis_is_back(user, embedded_redis,
                                                                                            tmp_path):
    missing = missing_browser()
    if missing:
        pytest.fail(missing, pytrace=False)  # not a skip: CI must run this test
    experiment = Experiment.objects.create(owner=user, name="outage", config=tiny_config(), total_generations=2)
    env = stack_env(embedded_redis.url, tmp_path / "var")  # nothing sends the experiment: it stays queued
    with Stack(env, free_port(), tmp_path / "stack.log") as stack, headless_chromium(tmp_path / "downloads") as driver:
        stack.wait_until_serving(timeout=90)
        sign_in(driver, stack.url, user.username, "a-long-test-password")
        started = time.monotonic()
        try:
            run_outage(driver, stack, embedded_redis, experiment)
        except Exception as failure:
            report = f"{driver.execute_script(READ_INDICATOR)}\n--- browser console ---\n{console_log(driver)}"
            raise AssertionError(f"{failure}\n{report}\n--- runstack log ---\n{stack.log()}") from failure
        print(f"outage and recovery seen in {time.monotonic() - started:.1f} s")
        assert "Traceback" not in stack.log(), stack.log()  # one warning line per lost stream, no tracebacks
