"""One search as chunks (experiments.fanout), in this process: the same history as `run_search`
whatever order, repetition or failure the chunks come back with. Real worker processes:
tests/web/stack/test_fan_out_workers.py."""

import os
import random
from datetime import timedelta

import pytest
from django.utils import timezone

from lfl_web.experiments.broker import EVALUATE_CHUNK
from lfl_web.experiments.fanout import chunk_worker, coordinator, dispatch, search_driver
from lfl_web.experiments.models import Candidate, Chunk, ChunkStatus, Experiment, Phase, Status, StoredSearch
from lfl_web.experiments.tasks import run_experiment

from ...conftest import tiny_config
from ...histories import reference_history, stored_history

pytestmark = pytest.mark.django_db


def chunked_config(**sections) -> dict:
    """6 candidates per generation in chunks of 2, 3 generations."""
    return tiny_config(search={"population_size": 6, "generations": 3},
                       evaluation={"strategy": "batched", "max_population_chunk": 2}, **sections)


def drain_shuffled(rng: random.Random, repeat: bool) -> int:
    """Run the queued chunks in a random order, each (with `repeat`) twice, as redelivery would; how many ran."""
    ran, queue = 0, dispatch.inline_queue()
    while queue:
        batch = list(queue)
        queue.clear()
        rng.shuffle(batch)
        for pk in batch:
            assert chunk_worker.run_chunk(pk, worker="w1") in ("done", "dropped")
            if repeat:
                assert chunk_worker.run_chunk(pk, worker="w2") == "dropped"  # finished: nothing changes
            ran += 1
    return ran


@pytest.mark.parametrize("local_search", [{"mode": "off"}, {"mode": "top_k", "top_k": 2, "meta_steps": 2}])
def test_chunks_in_any_order_and_delivered_twice_give_the_history_of_run_search(make_experiment, local_search):
    config = chunked_config(local_search=local_search, product_defaults=True)  # the tuned rate travels with chunks
    experiment = make_experiment(config=config)
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    generation_0 = Chunk.objects.filter(experiment=experiment, generation=0, phase=Phase.EVALUATE)
    # By population index, from the plan; candidate 5, sign(max(f, y)), is candidate 2's loss, sign(sign(div(y, f))):
    # both are constant over the classes (gradient zero), so it is a cache hit, not work.
    assert [c.indices for c in generation_0] == [[0, 1], [2, 3], [4]]
    drain_shuffled(random.Random(7), repeat=True)
    experiment.refresh_from_db()
    assert experiment.status == Status.SUCCEEDED
    assert stored_history(experiment) == reference_history(config)
    refined = Chunk.objects.filter(experiment=experiment, phase=Phase.REFINE)
    assert refined.exists() == (local_search["mode"] == "top_k")  # one chunk per best form not yet refined
    assert set(Chunk.objects.filter(experiment=experiment).values_list("attempts", flat=True)) == {1}


def test_a_chunk_that_raises_is_recorded_and_the_search_goes_on(make_experiment, monkeypatch):
    experiment = make_experiment(config=chunked_config())
    real = chunk_worker._evaluate

    def breaks_once(chunk):
        if (chunk.generation, chunk.number) == (0, 1):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(chunk)

    monkeypatch.setattr(chunk_worker, "_evaluate", breaks_once)
    assert run_experiment(experiment.pk) == Status.SUCCEEDED
    failed = Chunk.objects.get(experiment=experiment, generation=0, number=1)
    assert failed.status == ChunkStatus.FAILED
    assert failed.error == "RuntimeError: CUDA error: an illegal memory access was encountered"
    reasons = dict(Candidate.objects.filter(experiment=experiment, generation=0).values_list("index", "rejection_reason"))
    expected = "evaluation failed: RuntimeError: CUDA error: an illegal memory access was encountered"
    assert reasons[2] == reasons[3] == expected and expected not in (reasons[0], reasons[1])
    assert Candidate.objects.filter(experiment=experiment, generation=0, index__in=[2, 3], fitness=None).count() == 2
    assert len(stored_history(experiment)) == 3


def test_a_generation_moves_on_when_its_last_chunk_is_stored_whoever_stores_it(make_experiment):
    experiment = make_experiment(config=chunked_config())
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    first, second, third = dispatch.inline_queue()
    dispatch.inline_queue().clear()
    for pk in (third, first):
        assert chunk_worker.run_chunk(pk, worker="w") == "done"
    stored = StoredSearch.objects.get(experiment=experiment)
    assert stored.generation == 0 and not dispatch.inline_queue()
    # candidates are recorded as soon as the population's prefix is known: 0 and 1, not yet 4 and 5
    assert sorted(Candidate.objects.filter(experiment=experiment).values_list("index", flat=True)) == [0, 1]
    assert search_driver.advance(experiment.pk) is None  # nothing more is due: a no-op
    assert chunk_worker.run_chunk(second, worker="w") == "done"
    assert StoredSearch.objects.get(experiment=experiment).generation == 1
    assert list(dispatch.inline_queue()) == list(Chunk.objects.filter(experiment=experiment, generation=1).values_list("pk", flat=True))


def test_a_chunk_held_by_a_live_lease_is_not_taken_twice(make_experiment, settings):
    experiment = make_experiment(config=chunked_config())
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    chunk = Chunk.objects.get(pk=dispatch.inline_queue()[0])
    lease = chunk_worker.Lease(chunk, "w1")
    assert chunk.claim("w1", lease.until())
    assert chunk_worker.run_chunk(chunk.pk, worker="w2") == "dropped"
    assert Chunk.objects.get(pk=chunk.pk).worker == "w1"


def test_a_chunk_of_a_dead_pool_process_is_taken_at_once_by_its_nodes_next_process(make_experiment, settings):
    """A pool process killed mid-chunk leaves the chunk running under a lease that still holds; its
    replacement on the same node (the same machine) sees that the holder's process is gone and takes
    it at once, where another node, which cannot see that process, waits for the lease."""
    import subprocess
    import sys

    experiment = make_experiment(config=chunked_config())
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    chunk = Chunk.objects.get(pk=dispatch.inline_queue()[0])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = chunk_worker.holder_name("w1@host", int(gone.stdout))  # a process that has exited
    assert chunk.claim(dead, chunk_worker.Lease(chunk, dead).until())
    assert chunk_worker.run_chunk(chunk.pk, worker=chunk_worker.holder_name("w2@host", os.getpid())) == "dropped"
    assert chunk_worker.run_chunk(chunk.pk, worker=chunk_worker.holder_name("w1@host", os.getpid())) == "done"
    taken = Chunk.objects.get(pk=chunk.pk)
    assert taken.attempts == 2 and taken.worker == f"w1@host#{os.getpid()}"
    # A live sibling (this very process) is not taken over.
    other = Chunk.objects.filter(experiment=experiment, status=ChunkStatus.PENDING).first()
    live = chunk_worker.holder_name("w1@host", os.getppid())
    assert other.claim(live, chunk_worker.Lease(other, live).until())
    assert chunk_worker.run_chunk(other.pk, worker=chunk_worker.holder_name("w1@host", os.getpid())) == "dropped"


def test_the_sweep_sends_chunks_the_broker_never_took(make_experiment, settings, monkeypatch):
    from lfl_web.celery import app

    experiment = make_experiment(config=chunked_config())
    experiment.claim_for_worker("t")
    settings.LFL_CHUNK_DISPATCH = "celery"

    def broker_down(*args, **kwargs):
        raise OSError("Connection refused")

    monkeypatch.setattr(app, "send_task", broker_down)
    search_driver.start(experiment)  # the chunks are stored, their messages not sent
    assert list(Chunk.objects.filter(experiment=experiment).values_list("sent_at", flat=True)) == [None] * 3
    got = []
    monkeypatch.setattr(app, "send_task", lambda name, args, **kw: got.append((name, args[0], kw["queue"])))
    report = coordinator.sweep()
    pks = list(Chunk.objects.filter(experiment=experiment).values_list("pk", flat=True))
    assert report.resent == pks and got == [(EVALUATE_CHUNK, pk, "lfl.evaluation") for pk in pks]
    assert None not in Chunk.objects.filter(experiment=experiment).values_list("sent_at", flat=True)
    assert not coordinator.sweep().resent  # sent once: not again while they wait in the queue


def test_a_cancel_request_with_nothing_running_is_finished_by_the_sweep(make_experiment):
    experiment = make_experiment(config=chunked_config())
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    dispatch.inline_queue().clear()  # the messages wait in a queue no worker reads
    experiment.request_cancel()
    report = coordinator.sweep()
    assert report.finished == {experiment.pk: "stopped"}
    assert Experiment.objects.get(pk=experiment.pk).status == Status.CANCELLED



def test_a_worker_keeps_one_evaluator_for_all_its_chunks_of_a_search(make_experiment, monkeypatch):
    import search_engine.tasks.task

    loads = []
    real = search_engine.tasks.task.load_task
    monkeypatch.setattr(search_engine.tasks.task, "load_task", lambda config: loads.append(1) or real(config))
    experiment = make_experiment(config=chunked_config())
    assert run_experiment(experiment.pk) == Status.SUCCEEDED
    assert Chunk.objects.filter(experiment=experiment).count() > 3
    assert len(loads) == 2  # the start's, kept for every chunk; then the meta-test's own


def test_the_sweep_moves_on_a_search_whose_last_chunk_was_stored_by_a_process_lost_before_advancing(make_experiment):
    experiment = make_experiment(config=chunked_config())
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    queued = list(dispatch.inline_queue())
    dispatch.inline_queue().clear()
    for pk in queued:  # outcomes stored, as a worker would, but nobody advanced
        chunk = Chunk.objects.get(pk=pk)
        assert chunk.claim("lost", chunk.sent_at)
        chunk.store(ChunkStatus.DONE, chunk_worker._evaluate(chunk))
    assert StoredSearch.objects.get(experiment=experiment).generation == 0
    coordinator.sweep()
    assert StoredSearch.objects.get(experiment=experiment).generation == 1
    assert Candidate.objects.filter(experiment=experiment, generation=0).count() == 6
    chunk_worker.drain()
    assert Experiment.objects.get(pk=experiment.pk).status == Status.SUCCEEDED


def test_the_sweep_report_says_what_it_did():
    assert coordinator.SweepReport().describe() == ""
    assert coordinator.SweepReport(broker_lost=True).describe(first_sweep=True) == "marked the broker"
    lost = coordinator.SweepReport(resent=[4, 5], finished={9: "stopped"}, broker_lost=True)
    assert lost.describe() == "the broker lost its data (its marker is gone); sent chunks [4, 5] again; experiment 9 stopped"


def test_a_stack_starting_again_releases_the_chunks_its_previous_workers_held(make_experiment):
    experiment = make_experiment(config=chunked_config())
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    first, *others = dispatch.inline_queue()
    dispatch.inline_queue().clear()
    chunk = Chunk.objects.get(pk=first)
    assert chunk.claim("old-worker", timezone.now() + timedelta(hours=1))  # a lease that would hold for long
    assert coordinator.release_every_lease() == [first]
    assert Chunk.objects.get(pk=first).status == ChunkStatus.PENDING
    assert dispatch.send_pending(experiment.pk) == [first, *others]


def test_the_sweep_advances_only_searches_with_nothing_out_or_asked_to_stop(make_experiment):
    busy, idle, stopping = (make_experiment(config=chunked_config()) for _ in range(3))
    for experiment in (busy, idle, stopping):
        experiment.claim_for_worker("t")
        search_driver.start(experiment)
    dispatch.inline_queue().clear()
    for chunk in Chunk.objects.filter(experiment=idle):  # stored, but nobody advanced
        chunk.store(ChunkStatus.DONE, chunk_worker._evaluate(chunk))
    stopping.request_cancel()
    assert coordinator.due_for_advance() == [idle.pk, stopping.pk]


def test_a_redelivered_start_finishes_a_search_whose_last_chunk_was_stored_and_meta_tests_it(make_experiment):
    experiment = make_experiment(config={**chunked_config(), "search": {"population_size": 6, "generations": 1}})
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    queued = list(dispatch.inline_queue())
    dispatch.inline_queue().clear()
    for pk in queued:  # every outcome stored, then the worker was lost before advancing
        chunk = Chunk.objects.get(pk=pk)
        chunk.store(ChunkStatus.DONE, chunk_worker._evaluate(chunk))
    search_driver.start(Experiment.objects.get(pk=experiment.pk))  # the experiment's task delivered again
    experiment.refresh_from_db()
    assert experiment.status == Status.SUCCEEDED and experiment.meta_test_status == "succeeded"
