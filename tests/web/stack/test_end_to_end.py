"""The whole path with real processes: embedded Redis, a Celery worker subprocess sharing the test
database file, and a websocket client on the real channels_redis layer."""

import time
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from lfl_web import celery_app
from lfl_web.experiments.models import Candidate, Experiment, Generation, LearnedLoss, Status
from lfl_web.experiments.tasks import run_experiment
from lfl_web.layers import redis_channel_layer

from ..conftest import tiny_config
from ..sockets import communicator_for
from .workers import Processes

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[3]
DEADLINE_SECONDS = 120


@pytest.fixture
def worker(embedded_redis, tmp_path):
    """A solo-pool Celery worker on the test database (searches and their chunks); stopped even when
    the test fails."""
    processes = Processes(embedded_redis.url, tmp_path)
    try:
        process = processes.worker("worker")
        yield process, processes.log("worker")
    finally:
        processes.stop_all()


async def watch_until_finished(communicator) -> list[dict]:
    """Messages until the final status. (No short timeouts: on a timeout the communicator kills the
    consumer, so each wait is bounded by what is left of the overall deadline.)"""
    received = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not received or received[-1]["type"] != "experiment_status" or received[-1]["experiment"]["status"] in (
        "queued", "running",
    ):
        left = deadline - time.monotonic()
        assert left > 0, f"no final status after {DEADLINE_SECONDS} s; got {[m['type'] for m in received]}"
        received.append(await communicator.receive_json_from(timeout=left))
    return received


def test_a_worker_runs_the_search_and_the_browser_sees_it_live(user, worker, embedded_redis, settings):
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(embedded_redis.url)}
    worker_process, log_path = worker
    experiment = Experiment.objects.create(owner=user, name="e2e", config=tiny_config(product_defaults=True),
                                           total_generations=2)

    async def run_and_watch():
        communicator = communicator_for(experiment.pk, user)
        connected, _ = await communicator.connect()
        assert connected
        snapshot = await communicator.receive_json_from(timeout=10)
        # This process's Celery app was configured without Redis; send through the embedded one.
        with celery_app.connection_for_write(embedded_redis.url) as broker:
            run_experiment.apply_async((experiment.pk,), connection=broker, ignore_result=True)
        try:
            return snapshot, await watch_until_finished(communicator)
        finally:
            await communicator.disconnect()

    try:
        snapshot, messages = async_to_sync(run_and_watch)()
    except (AssertionError, TimeoutError) as failure:
        alive = "running" if worker_process.poll() is None else f"exited with {worker_process.returncode}"
        raise AssertionError(f"{failure!r}; worker {alive}\n--- worker log ---\n{log_path.read_text()[-4000:]}") from None

    assert snapshot["type"] == "snapshot" and snapshot["experiment"]["status"] == "queued"
    types = [m["type"] for m in messages]
    assert types[0] == "experiment_status" and messages[0]["experiment"]["status"] == "running"
    assert "search_started" in types
    assert types.count("candidate_evaluated") == 4 * 2 and types.count("generation_finished") == 2
    assert types[-2:] == ["search_finished", "experiment_status"]
    assert messages[-1]["experiment"]["status"] == "succeeded"

    experiment.refresh_from_db()
    assert experiment.status == Status.SUCCEEDED and experiment.current_generation == 2
    assert Candidate.objects.filter(experiment=experiment).count() == 4 * 2
    assert Generation.objects.filter(experiment=experiment).count() == 2
    assert LearnedLoss.objects.filter(experiment=experiment, rank=1).exists()
