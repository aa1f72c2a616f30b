"""The admin while the task queue (the Celery broker) is unreachable: adding an experiment says so in
an admin message and goes back to the form with nothing stored (not even its "added" history entry);
deleting and asking to stop never need the queue and work as usual."""

import json

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.urls import reverse
from kombu.exceptions import OperationalError

from lfl_web.experiments import broker, services
from lfl_web.experiments.models import Experiment, Status

from ..conftest import tiny_config

ADD_URL = reverse("admin:experiments_experiment_add")
CHANGELIST_URL = reverse("admin:experiments_experiment_changelist")


@pytest.fixture
def queue_down(monkeypatch):
    """Every publish fails as kombu fails on a dead broker; returns the pks it was asked to send."""
    tried = []

    def send_task(name, args=None, **options):
        tried.extend(args)
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(broker.celery_app, "send_task", send_task)
    return tried


def add_form(name="tiny") -> dict:
    return {"name": name, "description": "", "config": json.dumps(tiny_config())}


@pytest.mark.django_db(transaction=True)  # the search is sent once the admin's transaction commits
def test_adding_while_the_queue_is_down_says_so_and_stores_nothing(admin_client, queue_down):
    response = admin_client.post(ADD_URL, add_form(), follow=True)
    assert response.status_code == 200 and response.redirect_chain == [(ADD_URL, 302)]  # back to the form
    page = response.content.decode()
    assert f'<li class="error">{services.NOT_SAVED_QUEUE_DOWN}</li>' in page
    assert "was added successfully" not in page
    assert len(queue_down) == 1 and not Experiment.objects.exists()
    assert not LogEntry.objects.exists()  # no history of an experiment that was withdrawn


@pytest.mark.django_db(transaction=True)
def test_an_added_experiment_is_logged_once_the_queue_took_it(admin_client, sent):
    response = admin_client.post(ADD_URL, add_form(), follow=True)
    experiment = Experiment.objects.get()
    assert response.redirect_chain[-1] == (CHANGELIST_URL, 302) and sent == [experiment.pk]
    assert "was added successfully" in response.content.decode()
    [entry] = LogEntry.objects.all()
    assert entry.action_flag == ADDITION and entry.object_id == str(experiment.pk)


@pytest.mark.django_db
def test_deleting_while_the_queue_is_down_works(admin_client, make_experiment, queue_down):
    one, two, three = (make_experiment(status=Status.SUCCEEDED) for _ in range(3))
    response = admin_client.post(reverse("admin:experiments_experiment_delete", args=[one.pk]), {"post": "yes"})
    assert response.status_code == 302 and response["Location"] == CHANGELIST_URL
    response = admin_client.post(CHANGELIST_URL, {"action": "delete_selected", "post": "yes",
                                                  "_selected_action": [two.pk, three.pk]})
    assert response.status_code == 302
    assert not Experiment.objects.exists() and queue_down == []


@pytest.mark.django_db
def test_asking_to_stop_while_the_queue_is_down_works(admin_client, make_experiment, queue_down):
    experiment = make_experiment()
    experiment.claim_for_worker("task-1")
    response = admin_client.post(CHANGELIST_URL, {"action": "request_cancel", "_selected_action": [experiment.pk]},
                                 follow=True)
    assert response.status_code == 200 and "Asked 1 search(es) to stop." in response.content.decode()
    assert Experiment.objects.get(pk=experiment.pk).cancel_requested and queue_down == []
