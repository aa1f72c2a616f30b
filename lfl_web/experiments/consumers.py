"""The live stream of one experiment: ws/experiments/<id>/.

On connect the consumer joins the experiment's group and then sends the snapshot read from the
database (every panel rendered, the whole chart), so nothing announced in between is lost; a repeat
is harmless, since a panel swapped in twice shows the same. Every later message is one event with
the panels it changed, rendered once by the publisher (lfl_web.experiments.recording.publish).
Close codes: 4401 not signed in, 4403 no such experiment or not allowed to see it.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from lfl_web.experiments.dashboard import snapshot_message
from lfl_web.experiments.models import Experiment
from lfl_web.experiments.recording import group_name

CLOSE_NOT_SIGNED_IN = 4401
CLOSE_NOT_ALLOWED = 4403


@database_sync_to_async
def may_view(experiment_id: int, user) -> bool:
    return Experiment.objects.visible_to(user).filter(pk=experiment_id).exists()


@database_sync_to_async
def load_snapshot(experiment_id: int) -> dict | None:
    """The experiment's snapshot message, or None if it was deleted meanwhile."""
    experiment = Experiment.objects.select_related("owner").filter(pk=experiment_id).first()
    return snapshot_message(experiment) if experiment else None


class ExperimentConsumer(AsyncJsonWebsocketConsumer):
    group = None

    async def connect(self):
        user = self.scope.get("user")
        experiment_id = self.scope["url_route"]["kwargs"]["experiment_id"]
        await self.accept()  # accept first, so the browser receives the close code
        if user is None or not user.is_authenticated:
            return await self.close(code=CLOSE_NOT_SIGNED_IN)
        if not await may_view(experiment_id, user):
            return await self.close(code=CLOSE_NOT_ALLOWED)
        self.group = group_name(experiment_id)
        await self.channel_layer.group_add(self.group, self.channel_name)  # before reading: miss nothing
        snapshot = await load_snapshot(experiment_id)
        if snapshot is None:
            return await self.close(code=CLOSE_NOT_ALLOWED)
        await self.send_json(snapshot)

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """The stream is one-way; what a client sends is ignored."""

    async def experiment_update(self, message):
        """Every experiment event (recording.UPDATE_MESSAGE): forwarded as rendered by the publisher."""
        await self.send_json(message["event"])
