"""The live stream of an experiment: each search event saved, then sent to the channel group its
browsers joined through the websocket consumer."""
