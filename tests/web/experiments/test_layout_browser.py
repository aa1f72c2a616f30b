"""The pages fit their screens, measured in a real browser: headless Chromium opens the leaderboard at
1280 px and a finished experiment's dashboard at 800 px (pages served by a live test server, rows
made here), and the document is no wider than the window, no leaderboard row is taller than
MAX_ROW_HEIGHT however many transfers its loss has, and the "Tested on" choices sit side by side.
Screenshots go to /tmp/lfl_screens/ for a person to look at."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from lfl_web.experiments.models import (
    Candidate,
    Chunk,
    ChunkStatus,
    Experiment,
    Generation,
    LearnedLoss,
    Status,
    StoredSearch,
    TransferRun,
)

from ..browser import console_log, full_page_screenshot, headless_chromium, missing_browser
from ..conftest import tiny_config

pytestmark = pytest.mark.django_db(transaction=True)

SCREENS = Path("/tmp/lfl_screens")
MAX_ROW_HEIGHT = 200  # px: a row taller than this is mostly empty space (the issue saw 440-790 px)

CE = "mul(-1, mul(y, log(f)))"
#: A formula longer than any cell: it must scroll inside its cell, never widen the page.
LONG = "add(" * 7 + "mul(-1, mul(y, log(f)))" + ", square(sub(f, y)))" * 7
LONG_LATEX = r"\left(" * 7 + r"- y \log{\left(f \right)}" + r" + \left(f - y\right)^{2}\right)" * 7

# The widths the page lays out for, the heights of each row and of the "Tested on" selects.
MEASURE = """
const root = document.documentElement;
const rows = [...document.querySelectorAll("table.leaderboard > tbody > tr")].map((r) => r.getBoundingClientRect().height);
const pair = [...document.querySelectorAll(".filters .select-pair select")].map((s) => s.getBoundingClientRect().top);
// what scrolls sideways inside the page (a table's wrapper, a panel) beyond a formula's own cell
const inner = [...document.querySelectorAll(".table-wrap, .panel")].filter((e) => e.scrollWidth > e.clientWidth + 1)
  .map((e) => `${e.id || e.className}: ${e.scrollWidth} > ${e.clientWidth}`);
return {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, rows, pair, inner};
"""


def comparison(learned_mean: float, baseline_mean: float, *, tuned: bool = True) -> dict:
    """A meta-test record as the worker stores it (at the search's rate, and at tuned rates)."""
    record = {"expression": CE, "steps": 2000, "metric": "error rate", "seeds": [1000, 1001, 1002],
              "learned": [learned_mean] * 3, "baseline": [baseline_mean] * 3, "learned_mean": learned_mean,
              "learned_std": 0.00003, "baseline_mean": baseline_mean, "baseline_std": 0.0123, "wins": 2,
              "t_statistic": -2.5, "p_value": 0.0421, "baseline_loss": "cross_entropy"}
    if tuned:
        record["tuned_lr"] = {**record, "learned_mean": learned_mean * 0.9, "baseline_mean": baseline_mean * 0.95,
                              "learned_lr": 0.0316, "baseline_lr": 0.1, "tried": {}}
    return record


def finished_experiment(user, *, name: str, method: str = "evomal", task: dict | None = None, data_name: str = "",
                        fitness=(0.1123, 0.1178, 0.1209), baseline: float = 0.1213, test=None) -> Experiment:
    """A succeeded search with generations, candidates and learned losses (the best meta-tested when `test`)."""
    experiment = Experiment.objects.create(
        owner=user, name=name, config=tiny_config(method=method, task=task or {}), data_name=data_name,
        baseline_loss="cross_entropy", baseline_fitness=baseline, total_generations=3, current_generation=3,
        status=Status.SUCCEEDED, finished_at=timezone.now())
    hall = [{"expression": LONG if rank == 0 else CE, "canonical_key": f"k{rank}", "latex": LONG_LATEX if rank == 0 else
             r"-y \log f", "fitness": f, "size": 41 if rank == 0 else 6, "generation": rank,
             "weights": [1.25] * 40 if rank == 0 else None} for rank, f in enumerate(fitness)]
    for index in range(3):
        Generation.objects.create(experiment=experiment, index=index, best_fitness=fitness[0] + 0.01 * (2 - index),
                                  mean_fitness=0.4, median_fitness=0.35, evaluated=8, rejected=2, cache_hits=1,
                                  best_expression=CE, best_latex=r"-y \log f", hall_of_fame=hall, seconds=12.5)
    Candidate.objects.bulk_create(
        Candidate(experiment=experiment, generation=2, index=i, expression=LONG if i == 0 else CE, canonical_key=f"c{i}",
                  latex=LONG_LATEX if i == 0 else r"-y \log f", fitness=None if i == 3 else 0.12 + i / 100,
                  rejection_reason="not decreasing in f: the loss rises as the prediction nears the target" if i == 3
                  else "", weights=[1.0] * 5 if i == 1 else None)
        for i in range(4))
    LearnedLoss.objects.replace_for(experiment, hall)
    if test is not None:
        experiment.learned_losses.filter(rank=1).update(meta_test=comparison(*test))
    return experiment


def transfer(loss, dataset: str, model: str, status: str, **fields) -> TransferRun:
    return TransferRun.objects.create(learned_loss=loss, dataset=dataset, model=model, status=status, seeds=3,
                                      steps=2000, **fields)


def succeeded(loss, dataset: str, model: str, learned: float, baseline: float) -> TransferRun:
    return transfer(loss, dataset, model, "succeeded", seeds_done=3, record=comparison(learned, baseline),
                    improvement=(baseline - learned) / baseline)


@pytest.fixture
def leaderboard_rows(user, other_user):
    """Losses of every method on built-in and uploaded data, with many transfers and one "no change"."""
    best = finished_experiment(user, name="digits, longer search with local search on", test=(0.0912, 0.1013))
    network = finished_experiment(other_user, name="ml3-snapshot-run", method="ml3", test=(0.1013, 0.1013))
    finished_experiment(user, name="taylorglo", method="taylorglo", fitness=(0.2,), baseline=0.2)
    finished_experiment(other_user, name="an-uploaded-table-with-a-long-name", data_name="measurements_2024_final_v2.csv",
                        task={"dataset": "digits"}, test=(0.21, 0.2))
    loss = best.learned_losses.get(rank=1)
    for dataset, model, learned, baseline in (("digits", "mlp", 0.0713, 0.0811), ("digits", "lenet5", 0.0521, 0.0513),
                                              ("digits28", "allcnnc", 0.0411, 0.0422), ("mnist", "resnet18", 0.0112, 0.0109)):
        succeeded(loss, dataset, model, learned, baseline)
    transfer(loss, "cifar10", "wideresnet", "running", seeds_done=1)
    transfer(loss, "fashion_mnist", "lenet5", "failed",
             error="DataError: the folder /srv/data/FashionMNIST/raw holds no train-images-idx3-ubyte file")
    transfer(loss, "svhn", "allcnnc", "queued")
    succeeded(network.learned_losses.get(rank=1), "digits", "mlp", 0.0811, 0.0811)
    return best


def signed_in_driver(driver, live_server, client, user) -> None:
    """The browser carries `user`'s session (made by the test client, stored in the shared database)."""
    client.force_login(user)
    driver.get(live_server.url + reverse("login"))
    driver.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                       "path": "/"})


def open_at_width(driver, url: str, width: int) -> dict:
    """Open `url` in a window `width` px wide (the page's own layout viewport) and measure it."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    driver.get(url)
    driver.execute_script("return document.fonts.ready.then(() => true)")  # KaTeX's fonts change widths
    return driver.execute_script(MEASURE)


def check_fits(driver, measured: dict, width: int, screen: str) -> None:
    shot = full_page_screenshot(driver, SCREENS / f"{screen}-{width}.png")
    problem = (f"{screen} at {width} px: the document is {measured['scrollWidth']} px wide in a "
               f"{measured['clientWidth']} px window (screenshot {shot})\n{console_log(driver)}")
    assert measured["clientWidth"] <= width and measured["scrollWidth"] <= measured["clientWidth"], problem
    assert measured["inner"] == [], f"{screen} at {width} px scrolls sideways inside: {measured['inner']} ({shot})"


@pytest.fixture
def browser(tmp_path):
    missing = missing_browser()
    if missing:
        pytest.fail(missing, pytrace=False)  # not a skip: CI must run this test
    with headless_chromium(tmp_path / "downloads") as driver:
        yield driver


@pytest.mark.parametrize("query", [{}, {"ranks": "all"}, {"tested_dataset": "digits", "tested_model": "mlp"}],
                         ids=["best", "every-entry", "tested-on"])
def test_the_leaderboard_fits_1280_px_without_tall_rows(browser, live_server, client, user, leaderboard_rows, query):
    signed_in_driver(browser, live_server, client, user)
    url = live_server.url + reverse("leaderboard") + "?" + "&".join(f"{k}={v}" for k, v in query.items())
    measured = open_at_width(browser, url, 1280)
    check_fits(browser, measured, 1280, "leaderboard-" + "-".join(query) if query else "leaderboard")
    assert len(measured["rows"]) >= 2 and max(measured["rows"]) <= MAX_ROW_HEIGHT, measured["rows"]
    top, other = measured["pair"]
    assert abs(top - other) <= 2, f"the two 'Tested on' choices are not side by side: tops {top} and {other}"
    for summary in browser.find_elements("css selector", ".transfer-runs > summary"):
        summary.click()  # every transfer's figures, opened on demand, still fit
    assert all(runs.is_displayed() for runs in browser.find_elements("css selector", ".transfer-runs ul"))
    check_fits(browser, browser.execute_script(MEASURE), 1280, "leaderboard-opened")


@pytest.mark.parametrize("staff", [False, True], ids=["user", "staff"])
def test_the_dashboard_of_a_finished_search_fits_800_px(browser, live_server, client, user, leaderboard_rows, staff):
    user.is_staff = staff
    user.save()
    signed_in_driver(browser, live_server, client, user)
    measured = open_at_width(browser, live_server.url + leaderboard_rows.get_absolute_url(), 800)
    check_fits(browser, measured, 800, "dashboard-staff" if staff else "dashboard")
    failed = Experiment.objects.create(owner=user, name="failed", config=tiny_config(), status=Status.FAILED,
                                       error="RuntimeError: value cannot be converted to type float without overflow",
                                       error_detail="Traceback (most recent call last):\n" + "  File " + "x" * 400)
    measured = open_at_width(browser, live_server.url + failed.get_absolute_url(), 800)
    check_fits(browser, measured, 800, "failed-staff" if staff else "failed")
    measured = open_at_width(browser, live_server.url + running_fanned_out(user).get_absolute_url(), 800)
    check_fits(browser, measured, 800, "running")


def running_fanned_out(user) -> Experiment:
    """A search whose chunks are out to workers with long names, one failed with a long message."""
    experiment = finished_experiment(user, name="running on many workers")
    Experiment.objects.filter(pk=experiment.pk).update(status=Status.RUNNING, finished_at=None)
    StoredSearch.objects.create(experiment=experiment, state={}, generation=2)
    now = timezone.now()
    for number, status in enumerate((ChunkStatus.DONE, ChunkStatus.RUNNING, ChunkStatus.PENDING, ChunkStatus.FAILED)):
        Chunk.objects.create(
            experiment=experiment, generation=2, number=number, status=status, attempts=1, started_at=now,
            items=[{"index": i, "expression": CE, "canonical_key": CE} for i in range(4 * number, 4 * number + 4)],
            worker=f"celery-worker-{number}-with-a-long-name@gpu-node-{number}.cluster.example.org",
            lease_until=now + timedelta(minutes=5),
            error="RuntimeError: CUDA out of memory while evaluating " + "a/very/long/path/" * 12 if number == 3 else "")
    return experiment
