"""The new-experiment form's limits: bounded sizes, the work estimate (on the page and as fields
change), the server's ceiling, the per-user queue limit, and data too small to split: each refused
at submit with a message where it belongs, and nothing stored."""

import re

import pytest
from django.urls import reverse

from lfl_web.experiments.models import Experiment

from .test_form_uploads import csv_upload
from .test_forms import field_block, form_data, uploaded_files

pytestmark = pytest.mark.django_db

NEW, ESTIMATE = reverse("experiment_new"), reverse("experiment_estimate")


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def estimate_panel(page: str) -> str:
    start = page.index('id="work-estimate"')
    return page[start:page.index("</section>", start)]


def test_a_billion_candidates_are_refused_at_their_fields_and_nothing_is_stored(signed_in, sent):
    response = signed_in.post(NEW, form_data(population_size=10**9, generations=10**9))
    page = response.content.decode()
    assert response.status_code == 200
    assert "must be at most 10000, got 1000000000" in field_block(page, "population_size")
    assert "must be at most 10000, got 1000000000" in field_block(page, "generations")
    assert not Experiment.objects.exists() and sent == []


def steps_shown(panel: str) -> dict[str, int]:
    """The estimate panel's step counts by kind ("fitness", ..., "meta-test") and its total ("total")."""
    numbers = {label: int(n.replace(",", "")) for n, label in re.findall(
        r"([\d,]+) (fitness|rejection|local search|meta-test)\b", panel)}
    numbers["total"] = int(re.search(r"<strong>([\d,]+)</strong> training steps", panel).group(1).replace(",", ""))
    return numbers


def test_the_page_shows_the_presets_work_estimate(signed_in):
    # quick: 25 x 10 = 250 candidates; 250 x 100 rejection, 250 x 50 x 1 local search, 5 seeds x 3 x 1500
    # meta-test and, tuned by default, the final choice's 4 losses x at most 11 rates x 2 tuning seeds x 1500
    # (the meta-test reuses its tuning) and 2 x 5 seeds x 1500 at the tuned rates (the fitness trainings:
    # tests/search_engine/test_bounds counts them)
    panel = estimate_panel(signed_in.get(NEW + "?preset=quick").content.decode())
    shown = steps_shown(panel)
    meta_test = 22_500 + 15_000 + 132_000
    assert (shown["rejection"], shown["local search"], shown["meta-test"]) == (25_000, 12_500, meta_test)
    assert shown["total"] == shown["fitness"] + 25_000 + 12_500 + meta_test
    assert "250 candidates" in panel and "allows up to 2,000,000,000" in panel


def test_the_estimate_endpoint_renders_the_same_panel_for_the_forms_current_values(signed_in):
    # form_data: 4 x 2 candidates; 8 x 100 rejection, no local search, 5 x 2 x 1500 meta-test and, the box
    # ticked as the form starts, the final choice's 4 x 11 x 2 x 1500 (its tuning reused by the meta-test)
    # and 2 x 5 x 1500 at the tuned rates; unticked, the paper's protocol alone
    values = form_data()
    del values["name"]  # an estimate needs no name
    response = signed_in.post(ESTIMATE, values)
    shown = steps_shown(response.content.decode())
    assert response.status_code == 200 and (shown["rejection"], shown["meta-test"]) == (800, 15_000 + 15_000 + 132_000)
    assert shown["total"] == shown["fitness"] + 800 + 162_000
    del values["meta_test_tune_lr"]
    assert steps_shown(signed_in.post(ESTIMATE, values).content.decode())["meta-test"] == 15_000
    refused = signed_in.post(ESTIMATE, form_data(population_size=10**9)).content.decode()
    assert "No estimate until" in refused and "search.population_size: must be at most 10000" in refused
    unparsed = signed_in.post(ESTIMATE, form_data(generations="many")).content.decode()
    assert "search.generations: Enter a whole number." in unparsed
    assert signed_in.get(ESTIMATE).status_code == 405


def test_over_the_ceiling_is_refused_with_both_numbers_and_the_estimate_warns(signed_in, sent, settings):
    settings.LFL_MAX_TRAINING_STEPS = 15_000
    page = signed_in.post(NEW, form_data()).content.decode()
    errors = page[page.index('class="form-errors"'):page.index("</div>", page.index('class="form-errors"'))]
    total = steps_shown(estimate_panel(page))["total"]
    assert total > 63_000 and f"asks for {total:,} training steps in total" in errors
    assert "more than the 15,000 this server" in errors
    assert "the search would be refused" in estimate_panel(page)
    assert not Experiment.objects.exists() and sent == []


def test_one_more_than_the_queue_limit_is_refused_with_a_message(signed_in, sent, settings, make_experiment,
                                                                upload_dir):
    settings.LFL_MAX_QUEUED_PER_USER = 1
    make_experiment()
    data = form_data(dataset="csv", model="mlp", kind="classification", label="label",
                     data_file=csv_upload("a,b,label\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(40))))
    page = signed_in.post(NEW, data).content.decode()
    assert "You have 1 experiments queued or running" in page and "LFL_MAX_QUEUED_PER_USER = 1" in page
    assert Experiment.objects.count() == 1 and uploaded_files(upload_dir) == [] and sent == []


@pytest.mark.parametrize(("rows", "field", "message"), [
    ("1,2,yes\n", "data_file", "data file my data.csv has 1 sample(s)"),
    ("".join(f"{i},{i},{'abc'[i % 3]}\n" for i in range(9)), "test_fraction",
     "the test split (test_fraction 0.2) would hold 2 of the 9 samples, fewer than the 3 classes"),
])
def test_data_too_small_to_split_is_refused_at_its_field_and_deleted(signed_in, sent, upload_dir, rows, field,
                                                                     message):
    data = form_data(dataset="csv", model="mlp", kind="classification", label="label",
                     data_file=csv_upload("a,b,label\n" + rows))
    page = signed_in.post(NEW, data).content.decode()
    assert message in field_block(page, field)
    assert not Experiment.objects.exists() and uploaded_files(upload_dir) == [] and sent == []
