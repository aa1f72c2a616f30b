"""When the task queue (the Celery broker, Redis) is down: a submit answers at once and truthfully
(503, nothing saved), nothing in a web request waits on a result store, a broker that comes back
empty is sent the queued searches again, and a second message for one search never starts it twice."""

import base64
import json
import time

import pytest
import redis
from django.urls import reverse

from lfl_web.api.models import ApiToken
from lfl_web.celery import app as celery_app
from lfl_web.experiments import services, tasks
from lfl_web.experiments.models import Experiment, MetaTestStatus, Status
from lfl_web.experiments.tasks import run_experiment
from lfl_web.redis_server import free_port

from ..conftest import tiny_config
from .submit.test_form_uploads import GOOD_CSV, csv_upload
from .submit.test_forms import form_data, uploaded_files

#: Far above the second or so a refused publish takes, far below the 19 s it used to hang.
HANG_SECONDS = 10


@pytest.fixture
def broker_down(monkeypatch):
    """The Celery app points at a port nobody listens on: what a dead Redis looks like."""
    monkeypatch.setitem(celery_app.conf, "broker_url", f"redis://:secret@127.0.0.1:{free_port()}/0")


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


# ----------------------------------------------------------------------------- a submit while it is down


@pytest.mark.django_db(transaction=True)  # the search is sent on commit: let the request commit
def test_an_api_submit_while_the_queue_is_down_is_a_prompt_503_and_stores_nothing(client, user, broker_down):
    key = ApiToken.objects.issue(user, "tests")[1]
    body = json.dumps({"name": "while redis is down", "config": tiny_config()})
    response, seconds = timed(lambda: client.post(reverse("api:experiments"), body, content_type="application/json",
                                                  HTTP_AUTHORIZATION=f"Token {key}"))
    assert seconds < HANG_SECONDS
    assert response.status_code == 503 and response["Retry-After"].isdigit()
    assert response.json() == {"error": services.NOT_SAVED_QUEUE_DOWN}
    assert not Experiment.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_form_submit_while_the_queue_is_down_says_so_keeps_the_form_and_stores_nothing(client, user, broker_down,
                                                                                          settings, tmp_path):
    settings.LFL_UPLOAD_DIR = tmp_path / "uploads"
    client.force_login(user)
    data = form_data(name="my csv run", dataset="csv", model="mlp", kind="classification", label="label",
                     data_file=csv_upload(GOOD_CSV))
    response, seconds = timed(lambda: client.post(reverse("experiment_new"), data))
    assert seconds < HANG_SECONDS
    page = response.content.decode()
    assert response.status_code == 503 and services.NOT_SAVED_QUEUE_DOWN in page
    assert 'value="my csv run"' in page  # what was typed is still there
    assert not Experiment.objects.exists() and uploaded_files(settings.LFL_UPLOAD_DIR) == []


def test_sending_a_search_never_waits_on_a_result_store(user, monkeypatch, django_capture_on_commit_callbacks):
    # The 19 s hang was the Redis result store, subscribed to for a result nobody reads, retrying.
    def result_store_touched(*args, **kwargs):
        raise AssertionError("a web request touched the Celery result store")

    monkeypatch.setattr(type(celery_app.backend), "on_task_call", result_store_touched)
    with django_capture_on_commit_callbacks(execute=True):
        experiment = services.create_experiment(owner=user, name="tiny", config=tiny_config())
    assert Experiment.objects.get(pk=experiment.pk).status == Status.QUEUED
    assert run_experiment.ignore_result  # and the worker stores none


# ----------------------------------------------------------------------------- after the broker is back


def sent_messages(url: str) -> list[tuple[str, list]]:
    """(task id, args) of each message on Celery's default queue, oldest first."""
    found = []
    for raw in reversed(redis.Redis.from_url(url).lrange("celery", 0, -1)):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        found.append((message["headers"]["id"], args))
    return found


@pytest.mark.django_db
def test_a_restarted_broker_gets_the_queued_searches_again_and_the_running_ones_stay_with_their_worker(
        make_experiment, embedded_redis):
    queued, running, meta_testing, done = make_experiment(), make_experiment(), make_experiment(), make_experiment()
    running.claim_for_worker("task-a")
    Experiment.objects.filter(pk=meta_testing.pk).update(status=Status.SUCCEEDED, celery_task_id="task-b",
                                                         meta_test_status=MetaTestStatus.RUNNING)
    Experiment.objects.filter(pk=done.pk).update(status=Status.SUCCEEDED, meta_test_status=MetaTestStatus.SUCCEEDED)
    assert services.requeue_queued(broker_url=embedded_redis.url) == [queued.pk]
    assert [args for _, args in sent_messages(embedded_redis.url)] == [[queued.pk]]
    assert Experiment.objects.get(pk=running.pk).status == Status.RUNNING  # its worker goes on with it


@pytest.mark.django_db
def test_a_second_message_for_a_running_search_does_not_start_it_again(make_experiment):
    experiment = make_experiment()
    assert experiment.claim_for_worker("task-a")
    assert not experiment.claim_for_worker("task-b")  # e.g. sent again after a broker restart
    assert experiment.status == Status.RUNNING and experiment.celery_task_id == "task-a"
    assert experiment.claim_for_worker("task-a")  # its own message, redelivered after its worker was lost


@pytest.mark.django_db
def test_a_second_message_does_not_run_a_meta_test_another_task_runs(make_experiment, monkeypatch):
    experiment = make_experiment()
    experiment.claim_for_worker("task-a")
    Experiment.objects.filter(pk=experiment.pk).update(status=Status.SUCCEEDED, meta_test_status=MetaTestStatus.RUNNING)
    meta_tested = []
    monkeypatch.setattr(tasks, "run_pending_meta_test", meta_tested.append)
    run_experiment.apply(args=(experiment.pk,), task_id="task-b")
    assert meta_tested == []
    run_experiment.apply(args=(experiment.pk,), task_id="task-a")  # redelivered: the lost worker's meta-test
    assert meta_tested == [experiment.pk]


@pytest.mark.django_db
def test_after_a_stack_restart_the_task_sent_again_takes_the_meta_test_over(make_experiment, embedded_redis):
    experiment = make_experiment()
    experiment.claim_for_worker("lost with the old stack")
    Experiment.objects.filter(pk=experiment.pk).update(status=Status.SUCCEEDED, meta_test_status=MetaTestStatus.RUNNING)
    assert services.requeue_unfinished(broker_url=embedded_redis.url) == [experiment.pk]
    [(task_id, args)] = sent_messages(embedded_redis.url)
    assert args == [experiment.pk] and Experiment.objects.get(pk=experiment.pk).celery_task_id == task_id
