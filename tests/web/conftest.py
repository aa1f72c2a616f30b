"""Fixtures for the web layer: users, a tiny search configuration, isolated channel layer and folders."""

from __future__ import annotations

import os

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model

from lfl_web.experiments.fanout import evaluator_cache
from lfl_web.experiments.fanout.dispatch import inline_queue
from lfl_web.experiments.models import Experiment
from lfl_web.layers import MEMORY_LAYER
from lfl_web.redis_server import EmbeddedRedis

# The settings have read LFL_TEST_DATABASE_URL (pytest-django loads them before any conftest);
# no subprocess may: one that shares the test database is given it (databases.shared_database_url),
# one that brings its own SQLite file must not land in the PostgreSQL server's database instead.
django_settings.DATABASES  # noqa: B018
os.environ.pop("LFL_TEST_DATABASE_URL", None)


#: The paper's fixed learning rate, in the search and in the meta-test (no final choice). The
#: product's defaults (the tuned protocol, the tuned meta-test and its final choice) train every loss
#: at several rates first; a test about something else leaves them off, to stay quick.
FIXED_RATE = {"training": {"lr_protocol": "fixed"}, "meta_test": {"tune_lr": False}}


def tiny_config(*, product_defaults: bool = False, **sections) -> dict:
    """A search of a few seconds on 2 CPU cores (real digits data, 4 x 2 candidates) at the fixed
    rate (FIXED_RATE); with `product_defaults`, the rate settings are left to the product's defaults."""
    config = {
        "task": {"dataset": "digits", "model": "logistic", "max_train": 300},
        "search": {"population_size": 4, "generations": 2},
        "training": {"steps": 20},
        "rejection": {"steps": 10, "samples": 40},
        "local_search": {"mode": "off"},
        "meta_test": {"steps": 20, "seeds": 2},
        "device": "cpu",
    }
    for name, values in ({} if product_defaults else FIXED_RATE).items():
        config[name] = {**config[name], **values}
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values} if isinstance(values, dict) else values
    return config


#: A quick hasher for the users the tests create and sign in (the default costs most of a second a
#: password on 2 cores). Not for the stack lane: its servers, with the product's settings, check them.
QUICK_HASHER = "django.contrib.auth.hashers.MD5PasswordHasher"


@pytest.fixture(autouse=True)
def isolated_web_settings(request, settings, tmp_path):
    """Channel messages stay in this process, and so do a search's chunks; checkpoints go to a fresh folder; data files the tests
    write under tmp_path may be used by experiments; passwords hash quickly outside the stack lane."""
    if request.node.get_closest_marker("stack") is None:
        settings.PASSWORD_HASHERS = [QUICK_HASHER, *settings.PASSWORD_HASHERS]
    settings.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    settings.LFL_CHECKPOINT_DIR = tmp_path / "checkpoints"
    settings.LFL_DATA_DIRS = [tmp_path]
    settings.LFL_CANCEL_POLL_SECONDS = 0.0
    settings.LFL_CHUNK_DISPATCH = "inline"  # a search's chunks run in the process that made them
    inline_queue().clear()
    evaluator_cache.forget_evaluator()
    settings.LFL_UPLOAD_DIR = tmp_path / "uploads"


@pytest.fixture
def upload_dir(settings):
    """Where this test's uploads are kept (a fresh folder, set for every web test)."""
    return settings.LFL_UPLOAD_DIR


@pytest.fixture
def sent(monkeypatch):
    """Experiment pks handed to Celery (nothing reaches a broker)."""
    from lfl_web.experiments import broker

    pks = []

    def send_task(name, args=None, **options):
        assert name == broker.RUN_EXPERIMENT
        pks.extend(args)

    monkeypatch.setattr(broker.celery_app, "send_task", send_task)
    return pks


@pytest.fixture
def sent_transfers(monkeypatch):
    """TransferRun pks handed to Celery (nothing reaches a broker)."""
    from lfl_web.experiments import broker

    pks = []

    def send_task(name, args=None, **options):
        assert name == broker.RUN_TRANSFER
        pks.extend(args)

    monkeypatch.setattr(broker.celery_app, "send_task", send_task)
    return pks


def watch_group(experiment_id: int):
    """Start listening to the experiment's group; returns received() -> the socket messages (each
    group message's `event`) sent since, on the in-memory channel layer."""
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from lfl_web.experiments.live.recording import UPDATE_MESSAGE, group_name

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group_name(experiment_id), channel)

    def received() -> list[dict]:
        messages = []
        while True:
            try:
                message = async_to_sync(asyncio.wait_for)(layer.receive(channel), 0.05)
            except TimeoutError:
                return messages
            assert message["type"] == UPDATE_MESSAGE  # one channel message type for every event
            messages.append(message["event"])

    return received


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("ada", password="a-long-test-password")


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user("grace", password="a-long-test-password")


@pytest.fixture
def make_experiment(user):
    """An experiment row without the (torch-importing) data check; see test_models for validation."""

    def make(owner=None, **fields):
        config = fields.pop("config", tiny_config())
        if "total_generations" not in fields:
            from search_engine.study.method import generation_count

            fields["total_generations"] = generation_count(config)
        return Experiment.objects.create(owner=owner or user, name=fields.pop("name", "tiny"), config=config, **fields)

    return make


@pytest.fixture
def embedded_redis():
    server = EmbeddedRedis().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def back_to_latest():
    """Leave the database at the latest migrations for the tests that follow (a data migration's test
    migrates it back first)."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
