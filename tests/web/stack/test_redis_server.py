"""The embedded redis-server: a password it cannot misread, a fresh draw on every retry, and its own
words when it fails to start."""

import os
import re

import pytest
import redis

from lfl_web import redis_server
from lfl_web.redis_server import EmbeddedRedis, RedisStartError


def test_passwords_are_hex_and_never_look_like_an_option():
    drawn = {redis_server.new_password() for _ in range(5000)}
    assert len(drawn) == 5000
    assert all(re.fullmatch(r"[0-9a-f]{32}", p) for p in drawn)


def draws(monkeypatch, passwords):
    """new_password answers `passwords` in turn; returns the list of what was drawn."""
    given = []
    queue = iter(passwords)

    def next_password():
        given.append(next(queue))
        return given[-1]

    monkeypatch.setattr(redis_server, "new_password", next_password)
    return given


def test_a_password_redis_reads_as_an_option_costs_one_attempt_not_the_start(monkeypatch):
    # "--" first: redis-server takes it for an option and exits 1 (the flaky start once seen in CI).
    given = draws(monkeypatch, ["--Xq3w", "0123456789abcdef0123456789abcdef"])
    server = EmbeddedRedis(attempts=3).start()
    try:
        assert given == ["--Xq3w", "0123456789abcdef0123456789abcdef"]
        assert server.password == given[1] and f":{given[1]}@" in server.url
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()


def test_a_start_that_fails_says_what_redis_server_said(monkeypatch):
    draws(monkeypatch, ["--bad"] * 2)
    with pytest.raises(RedisStartError) as failure:
        EmbeddedRedis(attempts=2).start()
    message = str(failure.value)
    assert "exited with code 1" in message
    assert "--bad" in message or "argument" in message.lower()  # redis-server's own complaint, from its stderr


def test_the_embedded_redis_has_its_own_session_so_ctrl_c_does_not_stop_it_before_the_workers():
    server = EmbeddedRedis().start()
    try:
        assert os.getsid(server.pid) == server.pid != os.getsid(0)
    finally:
        server.stop()
