"""Tests of lfl_web.experiments.live: the live stream: recording events, the websocket consumer."""
