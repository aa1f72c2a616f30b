"""One search over real Celery worker processes on an embedded Redis: split over two workers, one
worker SIGKILLed mid-chunk, a prefork pool process SIGKILLed, the Redis killed and restarted, a chunk
that raises. Every search must end with the history of the single-process `run_search` of its
configuration."""

import os
import signal
import time

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from lfl_web import celery_app
from lfl_web.experiments.models import (
    Candidate,
    Chunk,
    ChunkStatus,
    Experiment,
    MetaTestStatus,
    Status,
    StoredSearch,
)
from lfl_web.experiments.tasks import run_experiment
from lfl_web.layers import redis_channel_layer

from ..conftest import tiny_config
from ..histories import reference_history, stored_history
from ..polling import wait_until
from ..sockets import communicator_for
from .workers import Processes

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE_SECONDS = 240
LEASE_SECONDS = "3"
#: How soon a prefork worker whose pool process was killed takes its next chunk (issue 21's
#: acceptance figure). The one timed check of the suite, because slowness is the fault: a new pool
#: process that imported torch, SymPy and the engine itself (5-10 s on 2 busy cores) missed Celery's
#: 4 s limit for reporting ready and was killed and forked again, for minutes; forked from a parent
#: that has imported them, it is ready at once, and 10 s leaves a busy machine room to spare.
NEXT_CHUNK_SECONDS = 10


def chunked_config(steps: int = 20, **sections) -> dict:
    """6 candidates per generation in chunks of 2, 3 generations, at the product's rate settings (the
    tuned protocol's rate travels with the chunks)."""
    return tiny_config(search={"population_size": 6, "generations": 3}, training={"steps": steps},
                       evaluation={"strategy": "batched", "max_population_chunk": 2}, product_defaults=True,
                       **sections)


@pytest.fixture
def processes(embedded_redis, tmp_path):
    running = Processes(embedded_redis.url, tmp_path, LFL_CHUNK_LEASE_SECONDS=LEASE_SECONDS)
    try:
        yield running
    finally:
        running.stop_all()


def submit(experiment, redis_url: str) -> None:
    with celery_app.connection_for_write(redis_url) as broker:
        run_experiment.apply_async((experiment.pk,), connection=broker, ignore_result=True)


def wait_for_the_end(experiment, processes: Processes) -> Experiment:
    """The experiment once its search and meta-test are over (AssertionError with the logs if not in time)."""
    def over():
        row = Experiment.objects.get(pk=experiment.pk)
        return row.is_finished and row.meta_test_status != MetaTestStatus.RUNNING

    assert wait_until(over, timeout=DEADLINE_SECONDS, interval=0.2), processes.logs()
    return Experiment.objects.get(pk=experiment.pk)


def test_a_search_split_over_two_workers_has_the_history_of_run_search(make_experiment, processes, embedded_redis):
    """...and it goes on when the coordinator is lost: chunks move the search on by themselves. The
    workers are given 2 threads each (as LFL_WORKERS=1 would on 2 cores): the search computes on the
    configuration's threads all the same."""
    config = chunked_config()
    experiment = make_experiment(config=config)
    processes.env.update(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    processes.worker("w1")
    processes.worker("w2")
    processes.coordinator()
    submit(experiment, embedded_redis.url)
    assert wait_until(lambda: Chunk.objects.filter(experiment=experiment).exists(), timeout=120), processes.logs()
    processes.kill("coordinator")
    experiment = wait_for_the_end(experiment, processes)
    assert experiment.status == Status.SUCCEEDED, processes.logs()
    assert stored_history(experiment) == reference_history(config)
    workers = set(Chunk.objects.filter(experiment=experiment).values_list("worker", flat=True))
    assert {w.split("@")[0] for w in workers} == {"w1", "w2"}  # both took chunks
    assert experiment.meta_test_status == MetaTestStatus.SUCCEEDED


def start_on_two_workers_and_wait_for_a_chunk_of_w1(experiment, processes, embedded_redis) -> Chunk:
    """Workers w1 and w2 and the coordinator, the experiment submitted; the first chunk w1 runs."""
    processes.worker("w1")
    processes.worker("w2")
    processes.coordinator()
    submit(experiment, embedded_redis.url)

    def held_by_w1():
        return Chunk.objects.filter(experiment=experiment, status=ChunkStatus.RUNNING, worker__startswith="w1@").first()

    assert wait_until(lambda: held_by_w1() is not None, timeout=120, interval=0.02), processes.logs()
    return held_by_w1()


def test_a_worker_killed_mid_chunk_leaves_the_history_unchanged(make_experiment, processes, embedded_redis):
    config = chunked_config(steps=4000, rejection={"enabled": False}, task={"model": "mlp"})
    experiment = make_experiment(config=config)
    held = start_on_two_workers_and_wait_for_a_chunk_of_w1(experiment, processes, embedded_redis)
    processes.kill("w1")
    lost = Chunk.objects.get(pk=held.pk)
    assert lost.status == ChunkStatus.RUNNING and lost.outcomes is None  # killed mid-chunk, nothing stored

    experiment = wait_for_the_end(experiment, processes)
    assert experiment.status == Status.SUCCEEDED, processes.logs()
    assert stored_history(experiment) == reference_history(config)
    lost.refresh_from_db()
    assert lost.status == ChunkStatus.DONE and lost.attempts == 2 and lost.worker.startswith("w2@")


def test_a_killed_pool_process_is_replaced_at_once_and_the_search_ends_as_run_search(
        make_experiment, embedded_redis, tmp_path):
    # The default lease (60 s): the chunk the killed process held must not wait for it to run out.
    processes = Processes(embedded_redis.url, tmp_path, LFL_CHUNK_LEASE_SECONDS="60")
    try:
        _kill_a_pool_process_mid_chunk(make_experiment, processes, embedded_redis)
    finally:
        processes.stop_all()


def _kill_a_pool_process_mid_chunk(make_experiment, processes, embedded_redis) -> None:
    config = chunked_config(steps=600, rejection={"enabled": False})
    experiment = make_experiment(config=config)
    processes.worker("w1", pool="prefork")
    processes.coordinator()
    submit(experiment, embedded_redis.url)
    assert wait_until(lambda: Chunk.objects.filter(experiment=experiment, status=ChunkStatus.RUNNING).exists(),
                      timeout=120, interval=0.02), processes.logs()
    held = Chunk.objects.get(experiment=experiment, status=ChunkStatus.RUNNING)
    [pool_process] = processes.pool_processes("w1")
    os.kill(pool_process, signal.SIGKILL)  # mid-chunk, as the kernel's OOM killer would
    killed_at = timezone.now()

    # The very chunk the dead process held starts again within seconds (its message comes back to the
    # replacement, which sees that the holder's process is gone), not after its lease.
    assert wait_until(lambda: Chunk.objects.filter(pk=held.pk, started_at__gt=killed_at).exists(),
                      timeout=NEXT_CHUNK_SECONDS, interval=0.05), processes.logs()
    assert processes.pool_processes("w1") not in ([], [pool_process])  # replaced
    experiment = wait_for_the_end(experiment, processes)
    assert experiment.status == Status.SUCCEEDED, processes.logs()
    assert stored_history(experiment) == reference_history(config)
    assert "Timed out waiting for UP message" not in processes.log("w1").read_text()


def test_a_restarted_redis_loses_nothing_and_a_reconnecting_viewer_sees_the_end(
        make_experiment, processes, embedded_redis, settings):
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(embedded_redis.url)}
    config = chunked_config(steps=1500, rejection={"enabled": False})
    experiment = make_experiment(config=config)
    processes.worker("w1")
    processes.coordinator()
    submit(experiment, embedded_redis.url)
    assert wait_until(lambda: StoredSearch.objects.filter(experiment=experiment, generation__gte=1).exists(),
                      timeout=120, interval=0.05), processes.logs()
    coordinator_log = processes.log("coordinator")
    assert wait_until(lambda: "marked the broker" in coordinator_log.read_text(), timeout=60), processes.logs()
    embedded_redis.process.kill()  # queued chunks and the marker go with it
    embedded_redis.process.wait()
    time.sleep(0.5)  # the workers see the connection drop
    embedded_redis.restart()

    experiment = wait_for_the_end(experiment, processes)
    assert experiment.status == Status.SUCCEEDED, processes.logs()
    assert stored_history(experiment) == reference_history(config)
    assert "the broker lost its data (its marker is gone)" in coordinator_log.read_text()

    owner = experiment.owner

    async def reconnect():
        communicator = communicator_for(experiment.pk, owner)
        connected, _ = await communicator.connect()
        assert connected
        snapshot = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        return snapshot

    snapshot = async_to_sync(reconnect)()
    assert snapshot["experiment"]["status"] == "succeeded" and snapshot["experiment"]["current_generation"] == 3


def test_a_chunk_that_raises_in_a_worker_is_recorded_and_the_search_goes_on(make_experiment, processes, embedded_redis):
    experiment = make_experiment(config=chunked_config())
    processes.worker("starter", queues="celery")  # searches only: the chunks wait in their queue
    submit(experiment, embedded_redis.url)
    assert wait_until(lambda: Chunk.objects.filter(experiment=experiment).count() == 3, timeout=120), processes.logs()
    broken = Chunk.objects.get(experiment=experiment, generation=0, number=1)
    broken.items = [{**item, "expression": "frobnicate(f)"} for item in broken.items]  # a damaged record
    broken.save()
    processes.worker("evaluator")

    experiment = wait_for_the_end(experiment, processes)
    assert experiment.status == Status.SUCCEEDED, processes.logs()
    broken.refresh_from_db()
    assert broken.status == ChunkStatus.FAILED and "frobnicate" in broken.error
    failed = Candidate.objects.filter(experiment=experiment, generation=0, index__in=broken.indices)
    assert [c.rejection_reason.startswith("evaluation failed: ") for c in failed] == [True, True]
    assert experiment.current_generation == 3


#: Searches of the other methods whose chunks take a few seconds each on 2 busy cores (EvoMAL's are above).
OTHER_METHODS = {
    "gplfl": chunked_config(steps=400, method="gplfl", rejection={"enabled": False}),
    "random": chunked_config(steps=400, method="random", rejection={"enabled": False}),
    "ml3": tiny_config(method="ml3", training={"steps": 400},
                       ml3={"meta_steps": 6, "report_every": 2, "hidden_units": 8, "batch_size": 32}),
    "taylorglo": tiny_config(method="taylorglo", training={"steps": 400}, taylorglo={"population_size": 4, "generations": 3},
                             evaluation={"strategy": "batched", "max_population_chunk": 2}),
}


@pytest.mark.parametrize("method", sorted(OTHER_METHODS))
def test_every_method_survives_a_killed_worker_and_a_restarted_redis_with_the_history_of_run_search(
        make_experiment, processes, embedded_redis, method):
    config = OTHER_METHODS[method]
    experiment = make_experiment(config=config)
    lost = start_on_two_workers_and_wait_for_a_chunk_of_w1(experiment, processes, embedded_redis)
    processes.kill("w1")  # mid-chunk: its lease runs out and the coordinator sends the chunk again
    embedded_redis.process.kill()  # and the broker loses its queue
    embedded_redis.process.wait()
    time.sleep(0.5)
    embedded_redis.restart()

    experiment = wait_for_the_end(experiment, processes)
    assert experiment.status == Status.SUCCEEDED, processes.logs()
    assert stored_history(experiment) == reference_history(config)
    lost.refresh_from_db()
    assert lost.status == ChunkStatus.DONE and lost.worker.startswith("w2@")
