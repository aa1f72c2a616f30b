"""The example plugin's data set and model in the web app: the form offers and accepts them, the
leaderboard filters by them, a transfer may target them, and a broken plugin is logged when the app starts."""

import json
import logging

import pytest
from django.apps import apps
from django.urls import reverse
from django.utils import timezone

from lfl_web.api.models import ApiToken
from lfl_web.experiments.models import Experiment, LearnedLoss, Status, TransferRun
from lfl_web.experiments.results.task_facts import class_count, stored_class_count, task_kind
from tests.search_engine.test_plugin_errors import BROKEN_FACTS, BROKEN_POINTS, plugin_site

from ..conftest import tiny_config
from .submit.test_forms import NEW, form_data
from .transfers.test_transfer import make_loss

pytestmark = pytest.mark.django_db

CE = "mul(-1, mul(y, log(f)))"


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def test_the_form_offers_the_plugins_choices_with_their_labels(signed_in):
    form = signed_in.get(NEW).context["form"]
    assert ("breast_cancer", "breast_cancer (3×10 grid, plugin)") in list(form.fields["dataset"].choices)
    assert ("grid_cnn", "grid_cnn (small CNN, plugin)") in list(form.fields["model"].choices)
    assert ("lenet5", "lenet5") in list(form.fields["model"].choices)


def test_the_form_accepts_them_and_refuses_a_model_their_data_cannot_feed(signed_in, sent):
    response = signed_in.post(NEW, form_data(name="plugin run", dataset="breast_cancer", model="grid_cnn"))
    assert response.status_code == 302
    experiment = Experiment.objects.get(name="plugin run")
    assert (experiment.config["task"]["dataset"], experiment.config["task"]["model"]) == ("breast_cancer", "grid_cnn")
    assert experiment.n_classes == 2  # the class count the pages show, from the plugin's facts
    refused = signed_in.post(NEW, form_data(name="too small", dataset="breast_cancer", model="lenet5"))
    assert refused.status_code == 200 and not Experiment.objects.filter(name="too small").exists()
    assert refused.context["form"].errors["model"] == [
        "lenet5 needs image input of at least 12x12 with shape (C, H, W); dataset 'breast_cancer' gives (1, 3, 10)"]


def test_the_api_accepts_them_and_names_a_pairing_that_does_not_fit(client, user, sent):
    key = ApiToken.objects.issue(user, "tests")[1]

    def create(name, task):
        body = json.dumps({"name": name, "config": tiny_config(task=task)})
        return client.post("/api/experiments/", body, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Token {key}")

    created = create("by api", {"dataset": "breast_cancer", "model": "grid_cnn"})
    assert created.status_code == 201, created.content
    assert created.json()["config"]["task"]["dataset"] == "breast_cancer"
    refused = create("flat data", {"dataset": "diabetes", "model": "grid_cnn"})
    assert refused.status_code == 400 and "task.model" in refused.content.decode()
    assert "grid_cnn needs image input of at least 2x2" in refused.content.decode()
    assert not Experiment.objects.filter(name="flat data").exists()


def test_the_pages_know_its_kind_and_class_count():
    config = tiny_config(task={"dataset": "breast_cancer", "model": "grid_cnn"})
    assert class_count(config) == 2 and stored_class_count(config, "", None) == 2
    assert task_kind(config, "") == "classification"


def test_the_leaderboard_filters_by_them_and_ranks_by_a_transfer_to_them(signed_in, make_experiment, user):
    experiment = make_experiment(name="on the grid", config=tiny_config(task={"dataset": "breast_cancer",
                                                                           "model": "grid_cnn"}),
                                 baseline_loss="cross_entropy", baseline_fitness=0.2)
    LearnedLoss.objects.replace_for(experiment, [{"expression": CE, "fitness": 0.1, "size": 6}])
    Experiment.objects.filter(pk=experiment.pk).update(status=Status.SUCCEEDED, finished_at=timezone.now())
    page = signed_in.get(reverse("leaderboard"))
    filters = page.context["filters"]
    assert ("breast_cancer", "breast_cancer") in list(filters.fields["dataset"].choices)
    assert ("grid_cnn", "grid_cnn") in list(filters.fields["model"].choices)
    assert "grid_cnn" in page.context["tested_models"] and "breast_cancer" in page.context["tested_datasets"]
    chosen = signed_in.get(reverse("leaderboard"), {"dataset": "breast_cancer", "model": "grid_cnn"})
    assert [row.experiment.name for row in chosen.context["rows"]] == ["on the grid"]
    assert not list(chosen.context["messages"])
    tested = signed_in.get(reverse("leaderboard"), {"tested_dataset": "breast_cancer", "tested_model": "grid_cnn"})
    assert tested.context["tested"] == ("breast_cancer", "grid_cnn") and not list(tested.context["messages"])


def test_a_transfer_to_them_is_offered_and_stored(signed_in, make_experiment, sent_transfers,
                                                  django_capture_on_commit_callbacks):
    loss = make_loss(make_experiment)
    page = signed_in.get(loss.experiment.get_absolute_url()).content.decode()
    assert '<option value="breast_cancer">breast_cancer (3×10 grid, plugin)</option>' in page
    assert '<option value="grid_cnn">grid_cnn</option>' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("loss_transfers", args=[loss.pk]),
                                  {"dataset": "breast_cancer", "model": "grid_cnn", "seeds": 1, "steps": 5})
    assert response.status_code == 302
    run = TransferRun.objects.get()
    assert (run.dataset, run.model) == ("breast_cancer", "grid_cnn") and sent_transfers == [run.pk]


def test_a_broken_plugin_is_logged_when_the_app_starts_and_the_others_stay_offered(tmp_path, signed_in, caplog):
    with plugin_site(tmp_path / "site") as install:
        found = install("broken-plugins", "1.0", BROKEN_POINTS, {"broken_facts": BROKEN_FACTS})
        with caplog.at_level(logging.ERROR, logger="lfl_web.experiments.apps"):
            apps.get_app_config("experiments").ready()
        choices = [value for value, _ in signed_in.get(NEW).context["form"].fields["dataset"].choices]
    logged = [r.getMessage() for r in caplog.records if r.name == "lfl_web.experiments.apps"]
    assert len(logged) == len(found.errors) == 8
    assert all(m.startswith("plugin not loaded, its data set or model is not offered: entry point ") for m in logged)
    assert any("'bad_kind' (broken_facts:BAD_KIND) in group lfl.datasets of package broken-plugins 1.0: its kind "
               "must be one of classification, regression, got 'ranking'" in m for m in logged)
    assert {"breast_cancer", "blobs"} <= set(choices) and "bad_kind" not in choices
