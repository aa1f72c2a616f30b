"""Websocket URLs (mounted by lfl_web.asgi behind the origin check and the auth middleware)."""

from django.urls import path

from lfl_web.experiments.live.consumer import ExperimentConsumer

websocket_urlpatterns = [
    path("ws/experiments/<int:experiment_id>/", ExperimentConsumer.as_asgi()),
]
