"""The websocket stream, through channels.testing.WebsocketCommunicator (transactional_db: the
consumer reads the database from its own thread, so rows must be committed)."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from lfl_web.asgi import application
from lfl_web.experiments.live.consumer import CLOSE_NOT_ALLOWED, CLOSE_NOT_SIGNED_IN, ExperimentConsumer
from lfl_web.experiments.live.recording import UPDATE_MESSAGE, group_name, record_event
from lfl_web.experiments.models import Experiment
from lfl_web.experiments.results.dashboard import PANEL_IDS, STATUS_PANELS
from search_engine.evolution.events import CandidateEvaluated, GenerationFinished, SearchFinished

from ...conftest import tiny_config
from ...sockets import communicator_for

pytestmark = pytest.mark.django_db(transaction=True)

CANDIDATE = CandidateEvaluated(generation=0, index=1, expression="sub(f, y)", canonical_key="f - y", latex="f - y",
                               fitness=0.25, rejection_reason=None, cache_hit=False)
GENERATION = GenerationFinished(generation=0, best_fitness=0.25, mean_fitness=0.25, median_fitness=0.25, evaluated=1,
                                rejected=0, cache_hits=0, best_expression="sub(f, y)", best_latex="f - y",
                                hall_of_fame=(), seconds=0.1)
FINISHED = SearchFinished(status="completed", generations_completed=1, best=None, evaluated=1, rejected=0, cache_hits=0)


async def close_code(communicator):
    connected, _ = await communicator.connect()
    assert connected  # accepted, then closed with a code the browser can read
    message = await communicator.receive_output(timeout=5)
    await communicator.disconnect()  # as the server says once the socket is closed; re-raises what the consumer raised
    return message["type"], message.get("code")


def test_anonymous_visitors_are_turned_away(make_experiment):
    experiment = make_experiment()
    result = async_to_sync(close_code)(communicator_for(experiment.pk, AnonymousUser()))
    assert result == ("websocket.close", CLOSE_NOT_SIGNED_IN)


def test_someone_elses_private_experiment_and_missing_ones_are_refused(make_experiment, user, other_user):
    secret = make_experiment(owner=other_user, private=True)
    ada = user
    assert async_to_sync(close_code)(communicator_for(secret.pk, ada)) == ("websocket.close", CLOSE_NOT_ALLOWED)
    assert async_to_sync(close_code)(communicator_for(secret.pk + 99, ada)) == ("websocket.close", CLOSE_NOT_ALLOWED)
    assert not get_channel_layer().groups.get(group_name(secret.pk))  # never joined


def test_snapshot_first_then_every_live_event_then_leaves_the_group(make_experiment, other_user):
    experiment = make_experiment()  # shared: any signed-in user may watch
    record_event(experiment.pk, CANDIDATE)  # already stored before the browser connects

    async def watch():
        communicator = communicator_for(experiment.pk, other_user)
        connected, _ = await communicator.connect()
        assert connected
        received = [await communicator.receive_json_from(timeout=5)]
        for event in (CANDIDATE, GENERATION, FINISHED):
            await sync_to_async(record_event)(experiment.pk, event)
        while len(received) < 5:
            received.append(await communicator.receive_json_from(timeout=5))
        await communicator.disconnect()
        return received

    snapshot, *live = async_to_sync(watch)()
    assert snapshot["type"] == "snapshot" and snapshot["experiment"]["id"] == experiment.pk
    assert tuple(snapshot["panels"]) == PANEL_IDS and snapshot["chart"]["points"] == []  # all of it, from the rows
    assert ">sub(f, y)</span>" in snapshot["panels"]["candidates-panel"]
    assert [m["type"] for m in live] == ["candidate_evaluated", "generation_finished", "search_finished",
                                         "experiment_status"]
    assert [tuple(m["panels"]) for m in live[:3]] == [
        ("candidates-panel", "workers-panel"),
        ("progress-panel", "best-panel", "hall-of-fame-panel", "candidates-panel", "pareto-panel", "workers-panel"), ()]
    assert live[1]["best_fitness"] == 0.25
    assert live[1]["chart"]["points"] == [{"generation": 0, "best": 0.25, "mean": 0.25}]
    assert live[3]["experiment"]["status"] == "succeeded" and tuple(live[3]["panels"]) == STATUS_PANELS
    assert 'data-status="succeeded"' in live[3]["panels"]["status"]
    assert not get_channel_layer().groups.get(group_name(experiment.pk))


def test_one_handler_serves_every_experiment_event():
    handlers = [name for name, value in vars(ExperimentConsumer).items()
                if callable(value) and name not in ("connect", "disconnect", "receive_json")
                and not name.startswith("_")]  # channels never dispatches to a name with a leading underscore
    assert handlers == ["experiment_update"]
    assert UPDATE_MESSAGE.replace(".", "_") == "experiment_update"  # how channels picks the handler


def test_a_reconnecting_browser_gets_the_current_state_from_the_database(make_experiment, user):
    experiment = make_experiment()
    for event in (CANDIDATE, GENERATION, FINISHED):
        record_event(experiment.pk, event)

    async def connect():
        communicator = communicator_for(experiment.pk, user)
        await communicator.connect()
        snapshot = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return snapshot

    snapshot = async_to_sync(connect)()
    client = Client()
    client.force_login(user)
    page = client.get(experiment.get_absolute_url()).content.decode()
    assert all(html in page for html in snapshot["panels"].values())  # what a reload would show
    assert snapshot["chart"]["points"] == [{"generation": 0, "best": 0.25, "mean": 0.25}]
    assert snapshot["experiment"]["status"] == "succeeded"


def test_the_full_asgi_stack_authenticates_by_session_and_checks_the_origin(user):
    experiment = Experiment.objects.create(owner=user, name="x", config=tiny_config())
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    path = f"/ws/experiments/{experiment.pk}/"

    async def connect(origin):
        communicator = WebsocketCommunicator(application, path, headers=[(b"cookie", cookie), (b"origin", origin)])
        connected, _ = await communicator.connect()
        first = await communicator.receive_json_from(timeout=5) if connected else None
        await communicator.disconnect()
        return connected, first

    connected, first = async_to_sync(connect)(b"http://localhost")
    assert connected and first["type"] == "snapshot" and first["experiment"]["owner"] == "ada"
    assert async_to_sync(connect)(b"http://evil.example") == (False, None)
