"""Sign in/out, the home page and the admin (start an experiment, ask it to stop, results read-only)."""

import json

import pytest
from django.urls import reverse

from lfl_web.experiments import services
from lfl_web.experiments.models import Experiment, LearnedLoss, Status

from ..conftest import tiny_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(django_user_model, client):
    user = django_user_model.objects.create_superuser("root", password="a-long-test-password")
    client.force_login(user)
    return user


def test_login_page_and_sign_in_then_out(client, user):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": "ada", "password": "a-long-test-password"})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302  # signed out again


def test_a_wrong_password_is_refused_with_a_message(client, user):
    response = client.post(reverse("login"), {"username": "ada", "password": "nope"})
    assert response.status_code == 200 and b"Please enter a correct username and password" in response.content


def test_home_lists_only_what_the_user_may_see(client, user, other_user, make_experiment):
    make_experiment(name="visible one")
    make_experiment(owner=other_user, name="hidden one", private=True)
    assert client.get(reverse("home"))["Location"].startswith(reverse("login"))
    client.force_login(user)
    page = client.get(reverse("home")).content.decode()
    assert "visible one" in page and "hidden one" not in page


def test_admin_add_validates_the_config_and_stores_nothing_on_error(client, admin, sent):
    response = client.post(reverse("admin:experiments_experiment_add"), {
        "name": "bad", "description": "", "config": '{"search": {"population_size": 1}}',
    })
    assert response.status_code == 200
    assert "search.population_size: must be at least 2, got 1" in response.content.decode()
    assert not Experiment.objects.exists() and sent == []


def test_admin_add_stores_the_experiment_for_its_creator_and_sends_it_to_a_worker(
    client, admin, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:experiments_experiment_add"), {
            "name": "tiny", "description": "d", "config": json.dumps(tiny_config()),
        })
    assert response.status_code == 302
    experiment = Experiment.objects.get()
    assert experiment.owner == admin and experiment.status == Status.QUEUED and experiment.total_generations == 2
    assert sent == [experiment.pk]


def test_admin_cancel_action(client, admin, make_experiment, monkeypatch):
    told = []
    monkeypatch.setattr(services, "broadcast_status", told.append)
    experiment, done = make_experiment(), make_experiment(status=Status.SUCCEEDED)
    client.post(reverse("admin:experiments_experiment_changelist"),
                {"action": "request_cancel", "_selected_action": [experiment.pk, done.pk]})
    assert Experiment.objects.get(pk=experiment.pk).status == Status.CANCELLED
    assert told == [experiment.pk]  # watchers of the one that changed are told


def test_admin_shows_results_read_only(client, admin, make_experiment):
    experiment = make_experiment()
    LearnedLoss.objects.replace_for(experiment, [{"expression": "sub(f, y)", "fitness": 0.2, "size": 3}])
    loss = LearnedLoss.objects.get()
    assert client.get(reverse("admin:experiments_learnedloss_changelist")).status_code == 200
    assert client.get(reverse("admin:experiments_learnedloss_add")).status_code == 403
    page = client.get(reverse("admin:experiments_learnedloss_change", args=[loss.pk]))
    assert page.status_code == 200 and b'name="expression"' not in page.content
    change = client.get(reverse("admin:experiments_experiment_change", args=[experiment.pk])).content.decode()
    assert 'name="name"' in change and 'name="config"' not in change


def test_admin_delete_removes_the_checkpoint_too(client, admin, make_experiment):
    from lfl_web.experiments.fanout.checkpoint_file import checkpoint_path

    experiment = make_experiment(status=Status.SUCCEEDED)
    checkpoint = checkpoint_path(experiment.pk)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{}")
    client.post(reverse("admin:experiments_experiment_delete", args=[experiment.pk]), {"post": "yes"})
    assert not Experiment.objects.filter(pk=experiment.pk).exists() and not checkpoint.exists()
    other = make_experiment(status=Status.FAILED)
    checkpoint_path(other.pk).write_text("{}")
    client.post(reverse("admin:experiments_experiment_changelist"),
                {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"})
    assert not Experiment.objects.filter(pk=other.pk).exists() and not checkpoint_path(other.pk).exists()
