"""The live stream of one experiment: ws/experiments/<id>/.

On connect the consumer joins the experiment's group and then sends the snapshot read from the
database (every panel rendered, the whole chart), so nothing announced in between is lost; a repeat
is harmless, since a panel swapped in twice shows the same. Every later message is one event with
the panels it changed, rendered once by the publisher (lfl_web.experiments.live.recording.publish) and
encoded once per process (EncodedEvents).
Close codes: 4401 not signed in, 4403 no such experiment or not allowed to see it, 4503 live
updates interrupted: the channel layer (Redis) is unreachable. The browser reconnects after 4503 (and
after any other close) with backoff, and its next snapshot catches up with what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque

import redis.exceptions
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from lfl_web.experiments import selectors
from lfl_web.experiments.live.recording import group_name
from lfl_web.experiments.results.dashboard import snapshot_message

logger = logging.getLogger(__name__)

CLOSE_NOT_SIGNED_IN = 4401
CLOSE_NOT_ALLOWED = 4403
CLOSE_LIVE_INTERRUPTED = 4503

#: What an unreachable channel layer raises (channels_redis through redis-py, or the socket itself).
LAYER_ERRORS = (redis.exceptions.RedisError, OSError)
#: The longest a connecting browser waits for the channel layer before it is told 4503 and retries.
LAYER_SECONDS = 5.0


class EncodedEvents:
    """The JSON text of the newest events this process relayed. channels_redis hands every consumer of
    a process the same message object (a group message goes to Redis once per process), so its text
    is encoded once, not once per viewer. An event is known by identity, never by value; it is held
    here, so its id cannot be reused while it is."""

    def __init__(self, size: int = 8):
        self._entries: deque[tuple[dict, str]] = deque(maxlen=size)

    def text(self, event: dict) -> str:
        for held, text in self._entries:
            if held is event:
                return text
        text = json.dumps(event)  # what AsyncJsonWebsocketConsumer.send_json sends
        self._entries.append((event, text))
        return text


#: Consumers run on the event loop of their process: one cache for all of them.
ENCODED_EVENTS = EncodedEvents()


@database_sync_to_async
def may_view(experiment_id: int, user) -> bool:
    return selectors.may_view_experiment(user, experiment_id)


@database_sync_to_async
def load_snapshot(experiment_id: int) -> dict | None:
    """The experiment's snapshot message, or None if it was deleted meanwhile."""
    experiment = selectors.experiment_with_owner(experiment_id)
    return snapshot_message(experiment) if experiment else None


class ExperimentConsumer(AsyncJsonWebsocketConsumer):
    group = None

    async def __call__(self, scope, receive, send):
        """The consumer, with a lost channel layer turned into one log line and close code 4503
        (instead of a traceback per browser and a close the browser cannot tell from others)."""
        try:
            await super().__call__(scope, receive, send)
        except LAYER_ERRORS as exc:
            logger.warning("live updates interrupted: the channel layer is unreachable (%s: %s)",
                           type(exc).__name__, exc)
            with contextlib.suppress(Exception):  # the browser may have gone already
                await send({"type": "websocket.close", "code": CLOSE_LIVE_INTERRUPTED})

    async def connect(self):
        user = self.scope.get("user")
        experiment_id = self.scope["url_route"]["kwargs"]["experiment_id"]
        await self.accept()  # accept first, so the browser receives the close code
        if user is None or not user.is_authenticated:
            return await self.close(code=CLOSE_NOT_SIGNED_IN)
        if not await may_view(experiment_id, user):
            return await self.close(code=CLOSE_NOT_ALLOWED)
        self.group = group_name(experiment_id)
        if not await self._joined():  # before reading: miss nothing
            logger.warning("live updates interrupted: could not join %s within %g s", group_name(experiment_id),
                           LAYER_SECONDS)
            return await self.close(code=CLOSE_LIVE_INTERRUPTED)
        snapshot = await load_snapshot(experiment_id)
        if snapshot is None:
            return await self.close(code=CLOSE_NOT_ALLOWED)
        await self.send_json(snapshot)

    async def _joined(self) -> bool:
        """Join the experiment's group; False if that takes over LAYER_SECONDS or the layer cancels it.
        Just after a Redis restart the layer sometimes cancels a join it was making; awaited directly, that
        cancellation ended the consumer silently and left the browser waiting for a snapshot forever.
        Now the browser is told 4503, retries, and its next snapshot catches up."""
        join = asyncio.ensure_future(self.channel_layer.group_add(self.group, self.channel_name))
        done, _ = await asyncio.wait({join}, timeout=LAYER_SECONDS)
        if not done:
            join.cancel()
        elif not join.cancelled():
            join.result()  # the layer's own error, if it failed (see __call__)
            return True
        self.group = None  # nothing to leave on disconnect
        return False

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """The stream is one-way; what a client sends is ignored."""

    async def experiment_update(self, message):
        """Every experiment event (recording.UPDATE_MESSAGE): forwarded as rendered by the publisher,
        encoded once for all the viewers of this process."""
        await self.send(text_data=ENCODED_EVENTS.text(message["event"]))
