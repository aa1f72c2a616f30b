"""A websocket client on an experiment's live stream, as a signed-in browser opens it."""

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from lfl_web.experiments.live.routing import websocket_urlpatterns


def communicator_for(experiment_id: int, user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/experiments/{experiment_id}/")
    communicator.scope["user"] = user
    return communicator
