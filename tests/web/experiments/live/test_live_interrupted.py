"""Live updates through an outage of the channel layer (Redis): the consumer closes the stream with
4503 instead of dying with a traceback, the dashboard's indicator says that live updates are
interrupted and that it reconnects (sentences of the template that socket.js shows by id), and the
snapshot sent on reconnect catches up with what was recorded meanwhile."""

import logging
import re
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.utils import timezone

from lfl_web.experiments.live.consumer import CLOSE_LIVE_INTERRUPTED, CLOSE_NOT_ALLOWED, CLOSE_NOT_SIGNED_IN
from lfl_web.experiments.live.recording import record_event
from lfl_web.experiments.models import Experiment, Status
from lfl_web.layers import redis_channel_layer
from lfl_web.redis_server import free_port

from .test_consumers import CANDIDATE, communicator_for

pytestmark = pytest.mark.django_db(transaction=True)

SOCKET_JS = Path(__file__).resolve().parents[4] / "static" / "js" / "dashboard" / "socket.js"
#: Every state socket.js shows; the template has one element per state, id connection-<state>.
STATES = ("connecting", "live", "interrupted", "reconnecting", "signed-out", "not-allowed", "finished")


def use_redis_layer(settings, url: str) -> None:
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(url)}


async def close_code_of(communicator) -> int:
    """The code the stream ends with, whether the server closed it before or after accepting."""
    connected, code = await communicator.connect(timeout=10)
    if connected:
        message = await communicator.receive_output(timeout=10)  # re-raises what the consumer raised
        assert message["type"] == "websocket.close", message
        code = message["code"]
    await communicator.disconnect(timeout=5)  # as the server says once the socket is closed; re-raises too
    return code


def test_an_unreachable_channel_layer_ends_the_stream_with_4503_and_one_log_line(make_experiment, user, settings,
                                                                               caplog):
    use_redis_layer(settings, f"redis://:secret@127.0.0.1:{free_port()}/0")
    experiment = make_experiment()
    with caplog.at_level(logging.WARNING, logger="lfl_web.experiments.live.consumer"):
        code = async_to_sync(close_code_of)(communicator_for(experiment.pk, user))
    assert code == CLOSE_LIVE_INTERRUPTED
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "live updates interrupted: the channel layer is unreachable"]


def test_when_redis_dies_the_stream_ends_with_4503_and_the_next_snapshot_catches_up(make_experiment, user, settings,
                                                                                   embedded_redis):
    use_redis_layer(settings, embedded_redis.url)
    experiment = make_experiment()

    async def watch_while_redis_dies():
        communicator = communicator_for(experiment.pk, user)
        assert (await communicator.connect(timeout=10))[0]
        snapshot = await communicator.receive_json_from(timeout=10)
        embedded_redis.process.kill()
        embedded_redis.process.wait()
        return snapshot, await communicator.receive_output(timeout=30)

    before, closed = async_to_sync(watch_while_redis_dies)()
    assert closed == {"type": "websocket.close", "code": CLOSE_LIVE_INTERRUPTED}
    record_event(experiment.pk, CANDIDATE)  # saved while its news cannot go out
    embedded_redis.restart()

    async def reconnect():
        communicator = communicator_for(experiment.pk, user)
        assert (await communicator.connect(timeout=10))[0]
        snapshot = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        return snapshot

    after = async_to_sync(reconnect)()
    assert CANDIDATE.expression not in before["panels"]["candidates-panel"]
    assert CANDIDATE.expression in after["panels"]["candidates-panel"]


def test_the_browser_reconnects_after_4503_and_stops_only_for_sign_in_and_permission():
    script = SOCKET_JS.read_text()
    assert CLOSE_LIVE_INTERRUPTED not in (CLOSE_NOT_SIGNED_IN, CLOSE_NOT_ALLOWED)
    assert f"event.code === {CLOSE_NOT_SIGNED_IN}" in script and f"event.code === {CLOSE_NOT_ALLOWED}" in script
    assert str(CLOSE_LIVE_INTERRUPTED) not in re.sub(r"/\*.*?\*/", "", script, flags=re.S)  # like any other close


# ----------------------------------------------------------------------------- the indicator


def indicator(client, user, experiment) -> tuple[str, dict[str, tuple[bool, str]]]:
    """The indicator on the page: its data-state, and its sentences (element id -> (hidden, text))."""
    client.force_login(user)
    page = client.get(experiment.get_absolute_url()).content.decode()
    block = page[page.index('<span id="connection"'):]
    state = re.match(r'<span id="connection"[^>]*data-state="([^"]*)"', block).group(1)
    sentences = {}
    for match in re.finditer(r'<span id="(connection-[a-z-]+)"([^>]*)>(.*?)</span>(?=<span id="connection-|</span>)',
                             block):
        text = " ".join(re.sub(r"<[^>]+>", "", match.group(3)).split())
        sentences[match.group(1)] = (" hidden" in match.group(2), text)
    return state, sentences


def test_the_template_holds_a_sentence_for_every_state_and_socket_js_shows_them_by_id(client, user, make_experiment):
    _, shown = indicator(client, user, make_experiment())
    assert {f"connection-{state}" for state in STATES} | {"connection-nojs"} == set(shown)
    hidden, interrupted = shown["connection-interrupted"]
    assert hidden and interrupted.startswith("live updates interrupted: reconnecting in 1 s")
    assert shown["connection-reconnecting"][1] == "live updates interrupted: reconnecting…"
    script = SOCKET_JS.read_text()
    assert "document.getElementById(`connection-${state}`)" in script
    assert 'document.getElementById("connection-retry-seconds")' in script  # the countdown, a number
    for state in STATES:
        assert f'"{state}"' in script, f"socket.js never shows {state}"


def test_the_indicator_is_dark_on_a_finished_experiment_and_waits_for_the_script_on_a_running_one(
        client, user, make_experiment):
    running = make_experiment()
    state, shown = indicator(client, user, running)
    assert state == "nojs" and shown.pop("connection-nojs") == (False, "live updates need JavaScript")
    assert all(hidden for hidden, _ in shown.values())

    Experiment.objects.filter(pk=running.pk).update(status=Status.SUCCEEDED, finished_at=timezone.now())
    state, shown = indicator(Client(), user, running)
    assert state == "finished" and shown.pop("connection-finished") == (False, "not live: this experiment has finished")
    assert all(hidden for hidden, _ in shown.values())  # "live" among them


@pytest.mark.parametrize("how", ["cancelled", "hung"])
def test_a_join_the_layer_cancels_or_never_finishes_ends_the_stream_with_4503(make_experiment, user, settings,
                                                                             monkeypatch, caplog, how):
    """Seen after a Redis restart: the layer cancelled a join, which ended the consumer silently and
    left the browser waiting for its snapshot for good. Now it is told 4503 and reconnects."""
    import asyncio

    from channels.layers import InMemoryChannelLayer

    from lfl_web.experiments.live import consumer

    async def broken_join(self, group, channel):
        if how == "cancelled":
            raise asyncio.CancelledError
        await asyncio.sleep(3600)

    monkeypatch.setattr(InMemoryChannelLayer, "group_add", broken_join)
    monkeypatch.setattr(consumer, "LAYER_SECONDS", 0.2)
    experiment = make_experiment()
    with caplog.at_level(logging.WARNING, logger="lfl_web.experiments.live.consumer"):
        code = async_to_sync(close_code_of)(communicator_for(experiment.pk, user))
    assert code == CLOSE_LIVE_INTERRUPTED
    assert any("could not join" in r.getMessage() for r in caplog.records)
