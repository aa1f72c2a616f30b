"""Channel layer settings, shared by settings.py and tests that talk to a real Redis."""

# channels_redis waits for messages with BZPOPMIN for 5 s, and redis-py (>= 8) gives up reading a
# socket after 5 s by default: the two race and a consumer dies after a quiet spell. Read longer.
SOCKET_TIMEOUT_SECONDS = 30


def redis_channel_layer(url: str) -> dict:
    """CHANNEL_LAYERS["default"] for a Redis server at `url`."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": url, "socket_timeout": SOCKET_TIMEOUT_SECONDS}]},
    }


MEMORY_LAYER = {"BACKEND": "channels.layers.InMemoryChannelLayer"}
