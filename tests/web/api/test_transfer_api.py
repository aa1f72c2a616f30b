"""Transfers through the API: ask for one (202), follow it, list a loss's transfers; the worker runs it;
bad input is a 400 naming the field and stores nothing; unknown or invisible losses are 404."""

import json

import pytest
from kombu.exceptions import OperationalError

from lfl_web.experiments import broker, services
from lfl_web.experiments.models import LearnedLoss, Status, TransferRun
from lfl_web.experiments.tasks import run_transfer

from ..conftest import tiny_config

pytestmark = pytest.mark.django_db

CROSS_ENTROPY = "mul(-1, mul(y, log(f)))"


@pytest.fixture
def loss(make_experiment):
    experiment = make_experiment(status=Status.SUCCEEDED, baseline_loss="cross_entropy", baseline_fitness=0.2,
                                 config=tiny_config(task={"max_train": 200}, meta_test={"steps": 10, "seeds": 2},
                                                    product_defaults=True))  # a source searched at a tuned rate
    return LearnedLoss.objects.create(experiment=experiment, rank=1, expression=CROSS_ENTROPY, complexity=6,
                                      validation_fitness=0.1, baseline_fitness=0.2, dataset="digits",
                                      model="logistic", metric="error rate")


def auth(key):
    return {"HTTP_AUTHORIZATION": f"Token {key}"}


def post(client, loss_pk, key, body, capture):
    with capture(execute=True):
        data = body if isinstance(body, bytes) else json.dumps(body)
        return client.post(f"/api/losses/{loss_pk}/transfers/", data, content_type="application/json", **auth(key))


def test_a_transfer_is_accepted_run_by_the_worker_and_followed(client, key, loss, sent_transfers,
                                                               django_capture_on_commit_callbacks):
    response = post(client, loss.pk, key, {"dataset": "digits", "model": "mlp", "seeds": 1},
                    django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.content
    body = response.json()
    run = TransferRun.objects.get()
    assert body == {"id": run.pk, "status": "queued", "url": f"http://testserver/api/transfers/{run.pk}/"}
    assert response["Location"] == body["url"] and sent_transfers == [run.pk]
    assert (run.seeds, run.steps, run.learned_loss) == (1, 10, loss)  # steps: the source's meta_test

    assert run_transfer(run.pk) == "succeeded"
    followed = client.get(body["url"], **auth(key)).json()
    assert followed["status"] == "succeeded" and followed["seeds_done"] == 1
    record = followed["record"]
    assert record["target"] == {"dataset": "digits", "model": "mlp"} and len(record["learned"]) == 1
    # at tuned rates, the comparison a transfer leads with (cross-entropy against itself: a tie)
    assert followed["improvement_basis"] == "tuned" and followed["verdict"]["code"] == "tie"
    assert followed["improvement"] == record["tuned_lr"]["relative_improvement"] == 0.0
    assert followed["improvement_at_search_rate"] == record["relative_improvement"]
    listed = client.get(f"/api/losses/{loss.pk}/transfers/", **auth(key)).json()
    assert [t["id"] for t in listed["transfers"]] == [run.pk]


def test_asking_twice_while_it_runs_is_a_409_and_a_finished_one_runs_again_on_its_row(
        client, key, loss, sent_transfers, django_capture_on_commit_callbacks):
    body = {"dataset": "digits", "model": "mlp", "seeds": 1, "steps": 5}
    assert post(client, loss.pk, key, body, django_capture_on_commit_callbacks).status_code == 202
    again = post(client, loss.pk, key, body, django_capture_on_commit_callbacks)
    assert again.status_code == 409 and "already being tested on digits/mlp" in again.json()["error"]
    run = TransferRun.objects.get()
    run.fail("RuntimeError: lost")
    assert post(client, loss.pk, key, body, django_capture_on_commit_callbacks).status_code == 202
    run.refresh_from_db()
    assert TransferRun.objects.count() == 1 and run.status == "queued" and run.error == ""
    assert sent_transfers == [run.pk, run.pk]


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"model": "mlp"}, "dataset", "this field is required"),
    ({"dataset": "digits"}, "model", "this field is required"),
    ({"dataset": "imagenet", "model": "mlp"}, "dataset", "unknown dataset 'imagenet'"),
    ({"dataset": "digits", "model": "gpt"}, "model", "unknown model 'gpt'"),
    ({"dataset": "diabetes", "model": "mlp"}, "dataset", "is a regression dataset"),
    ({"dataset": "csv", "model": "mlp"}, "dataset", "an uploaded file belongs to the experiment"),
    ({"dataset": "digits", "model": "mlp", "seeds": 0}, "seeds", "must be at least 1"),
    ({"dataset": "digits", "model": "mlp", "steps": "many"}, "steps", "must be a number, got a string"),
    ({"dataset": "digits", "model": "mlp", "seeds": True}, "seeds", "must be a number, got a boolean"),
    ({"dataset": "mnist", "model": "mlp", "data_root": "/etc"}, "data_root", "outside the folders"),
    ({"dataset": "digits", "model": "mlp", "colour": "red"}, "colour", "unknown field"),
])
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(client, key, loss, sent_transfers, body, field,
                                                                message, django_capture_on_commit_callbacks):
    response = post(client, loss.pk, key, body, django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert message in response.json()["errors"][field]
    assert not TransferRun.objects.exists() and sent_transfers == []


def test_a_malformed_body_is_a_400(client, key, loss, sent_transfers, django_capture_on_commit_callbacks):
    response = post(client, loss.pk, key, b"[1]", django_capture_on_commit_callbacks)
    assert response.status_code == 400 and "must be a JSON object" in response.json()["error"]


def test_unknown_and_invisible_losses_and_transfers_are_404(client, key, other_key, loss, sent_transfers,
                                                            django_capture_on_commit_callbacks):
    body = {"dataset": "digits", "model": "mlp"}
    assert post(client, 999999, key, body, django_capture_on_commit_callbacks).status_code == 404
    loss.experiment.private = True
    loss.experiment.save()
    assert post(client, loss.pk, other_key, body, django_capture_on_commit_callbacks).status_code == 404
    assert client.get(f"/api/losses/{loss.pk}/transfers/", **auth(other_key)).status_code == 404
    assert post(client, loss.pk, key, body, django_capture_on_commit_callbacks).status_code == 202
    run = TransferRun.objects.get()
    assert client.get(f"/api/transfers/{run.pk}/", **auth(other_key)).status_code == 404
    assert client.get(f"/api/transfers/{run.pk}/", **auth(key)).status_code == 200
    assert client.get(f"/api/transfers/{run.pk}/").status_code == 401


@pytest.mark.django_db(transaction=True)  # the transfer is sent on commit: let the request commit
def test_a_queue_that_does_not_take_it_is_a_503_and_stores_nothing(client, key, loss, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(broker.celery_app, "send_task", refuse)
    response = client.post(f"/api/losses/{loss.pk}/transfers/", json.dumps({"dataset": "digits", "model": "mlp"}),
                           content_type="application/json", **auth(key))
    assert response.status_code == 503 and response["Retry-After"]
    assert response.json() == {"error": services.TRANSFER_NOT_SAVED_QUEUE_DOWN}
    assert not TransferRun.objects.exists()
