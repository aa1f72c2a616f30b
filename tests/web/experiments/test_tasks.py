"""The Celery task, called in this process (the end-to-end test runs it in a real worker)."""


import pytest

from lfl_web.experiments.fanout import chunk_worker, coordinator, dispatch, search_driver
from lfl_web.experiments.fanout.best_loss_meta_test import CancelPoll
from lfl_web.experiments.models import (
    Candidate,
    Chunk,
    ChunkStatus,
    Experiment,
    Generation,
    LearnedLoss,
    MetaTestStatus,
    Status,
    StoredSearch,
)
from lfl_web.experiments.tasks import run_experiment

from ..conftest import tiny_config, watch_group

pytestmark = pytest.mark.django_db


class WorkerLost(BaseException):
    """Stands for a worker killed mid-search: not an Exception, so the task does not mark it failed."""


def intercept_events(monkeypatch, react):
    """Let `react(experiment_id, event)` act after each event has been recorded (and committed)."""
    real = search_driver.publish

    def publish_then_react(experiment_id, data, *args):
        real(experiment_id, data, *args)
        react(experiment_id, data)

    monkeypatch.setattr(search_driver, "publish", publish_then_react)


def test_a_search_runs_to_success_and_stores_everything(make_experiment):
    experiment = make_experiment(config=tiny_config(product_defaults=True))  # the tuned protocol and meta-test
    assert run_experiment(experiment.pk) == Status.SUCCEEDED
    experiment.refresh_from_db()
    assert experiment.status == Status.SUCCEEDED and experiment.started_at and experiment.finished_at
    assert (experiment.current_generation, experiment.total_generations) == (2, 2)
    assert experiment.baseline_loss == "cross_entropy" and experiment.baseline_fitness is not None
    assert Candidate.objects.filter(experiment=experiment).count() == 4 * 2
    assert list(Generation.objects.filter(experiment=experiment).values_list("index", flat=True)) == [0, 1]
    best = LearnedLoss.objects.get(experiment=experiment, rank=1)
    assert best.validation_fitness == Generation.objects.get(experiment=experiment, index=1).hall_of_fame[0]["fitness"]
    stored = StoredSearch.objects.get(experiment=experiment)  # the search's state is kept in the database
    assert stored.generation == 2 and len(stored.state["history"]) == 2
    assert set(Chunk.objects.filter(experiment=experiment).values_list("status", flat=True)) == {ChunkStatus.DONE}
    # the best loss is meta-tested against the baseline on paired seeds once the search has succeeded
    assert best.meta_test["expression"] == best.expression and len(best.meta_test["learned"]) == 2
    assert len(best.meta_test["baseline"]) == 2 and best.meta_test["metric"] == "error rate"
    assert best.meta_test["tuned_lr"]["learned_lr"] and best.meta_test["final_choice"]["candidates"]  # the defaults
    assert (experiment.meta_test_status, experiment.meta_test_seeds_done) == (MetaTestStatus.SUCCEEDED, 2)


def test_watchers_hear_each_meta_test_seed_and_the_results(make_experiment):
    experiment = make_experiment(config=tiny_config(product_defaults=True))
    received = watch_group(experiment.pk)
    run_experiment(experiment.pk)
    messages = received()
    types = [m["type"] for m in messages]
    succeeded = next(m for m in messages if m["type"] == "experiment_status" and m["experiment"]["status"] == "succeeded")
    assert succeeded["experiment"]["meta_test_status"] == "running"  # the page shows the indicator at once
    assert succeeded["experiment"]["meta_test_plan"] == {"seeds": 2, "steps": 20, "tune_lr": True}  # on by default
    progress = [m for m in messages if m["type"] == "meta_test_progress"]
    # each part announced as it begins (its seeds counted from 0), then each seed of the two seed parts
    assert [(m.get("phase"), m["seeds_done"], m["seeds"]) for m in progress] == [
        ("final_choice", 0, 2), ("search_rate", 0, 2), (None, 1, 2), (None, 2, 2),
        ("tuning", 0, 2), ("tuned_seeds", 0, 2), (None, 1, 2), (None, 2, 2)]
    assert types[-1] == "meta_test_finished" and types.index("meta_test_progress") > types.index("search_finished")
    assert messages[-1]["meta_test"]["wins"] <= 2


def test_a_failed_meta_test_is_recorded_and_announced_and_the_search_stays_succeeded(make_experiment, monkeypatch):
    import search_engine.scoring.metatest

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory while meta-testing")

    monkeypatch.setattr(search_engine.scoring.metatest, "evaluate_learned_loss", broken)
    experiment = make_experiment()
    received = watch_group(experiment.pk)
    assert run_experiment(experiment.pk) == Status.SUCCEEDED
    experiment.refresh_from_db()
    assert experiment.meta_test_status == MetaTestStatus.FAILED
    assert experiment.meta_test_error == "RuntimeError: out of memory while meta-testing"
    assert experiment.error == "" and LearnedLoss.objects.get(experiment=experiment, rank=1).meta_test is None
    last = received()[-1]
    assert last["type"] == "experiment_status" and last["experiment"]["meta_test_status"] == "failed"
    assert last["experiment"]["meta_test_error"] == experiment.meta_test_error


def test_a_redelivered_task_runs_a_meta_test_the_lost_worker_did_not_finish(make_experiment, monkeypatch):
    import search_engine.scoring.metatest

    real = search_engine.scoring.metatest.evaluate_learned_loss

    def lost(*args, **kwargs):
        raise WorkerLost

    monkeypatch.setattr(search_engine.scoring.metatest, "evaluate_learned_loss", lost)
    experiment = make_experiment()
    with pytest.raises(WorkerLost):
        run_experiment(experiment.pk)
    experiment.refresh_from_db()
    assert (experiment.status, experiment.meta_test_status) == (Status.SUCCEEDED, MetaTestStatus.RUNNING)
    assert list(Experiment.objects.waiting_for_meta_test()) == [experiment]

    monkeypatch.setattr(search_engine.scoring.metatest, "evaluate_learned_loss", real)
    assert run_experiment(experiment.pk) == Status.SUCCEEDED
    experiment.refresh_from_db()
    assert (experiment.meta_test_status, experiment.meta_test_seeds_done) == (MetaTestStatus.SUCCEEDED, 2)
    assert LearnedLoss.objects.get(experiment=experiment, rank=1).meta_test["seeds"]
    assert Generation.objects.filter(experiment=experiment).count() == 2  # the search was not run again


def test_an_exception_marks_the_experiment_failed_with_its_message(user, tmp_path):
    data = tmp_path / "points.csv"
    data.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(30)))
    config = tiny_config(task={"dataset": "csv", "data_file": str(data), "kind": "classification", "max_train": None})
    experiment = Experiment.objects.create_validated(owner=user, name="csv", config=config)
    data.unlink()  # the file disappears before a worker gets to it
    received = watch_group(experiment.pk)
    assert run_experiment(experiment.pk) == Status.FAILED
    experiment.refresh_from_db()
    assert experiment.status == Status.FAILED and experiment.finished_at
    assert experiment.error.startswith("ConfigError: task.data_file:") and str(data) in experiment.error
    assert experiment.error_detail.startswith("Traceback (most recent call last):")  # for staff, on the page
    assert experiment.error_detail.rstrip().endswith(experiment.error)
    assert [m["experiment"]["status"] for m in received() if m["type"] == "experiment_status"] == ["running", "failed"]


def test_a_cancel_request_stops_the_search_and_keeps_what_it_found(make_experiment, monkeypatch):
    experiment = make_experiment(config=tiny_config(search={"generations": 3}))

    def cancel_after_first_generation(experiment_id, event):
        if event["type"] == "generation_finished" and event["generation"] == 0:
            assert Experiment.objects.get(pk=experiment_id).request_cancel()

    intercept_events(monkeypatch, cancel_after_first_generation)
    assert run_experiment(experiment.pk) == Status.CANCELLED
    experiment.refresh_from_db()
    assert experiment.cancel_requested and experiment.current_generation == 1
    assert list(Generation.objects.filter(experiment=experiment).values_list("index", flat=True)) == [0]
    assert LearnedLoss.objects.filter(experiment=experiment).exists()


def test_a_chunk_lost_with_its_worker_is_sent_again_when_its_lease_runs_out(make_experiment, monkeypatch):
    experiment = make_experiment(config=tiny_config(search={"generations": 3}))
    real = chunk_worker._evaluate

    def dies_in_second_generation(chunk):
        if chunk.generation == 1:
            raise WorkerLost
        return real(chunk)

    monkeypatch.setattr(chunk_worker, "_evaluate", dies_in_second_generation)
    with pytest.raises(WorkerLost):
        run_experiment(experiment.pk)
    dispatch.inline_queue().clear()  # what the lost worker's process held is gone with it
    [held] = Chunk.objects.filter(experiment=experiment, status=ChunkStatus.RUNNING)
    assert held.generation == 1 and Experiment.objects.get(pk=experiment.pk).status == Status.RUNNING
    monkeypatch.undo()

    assert not coordinator.sweep().resent  # the lease still runs: the worker may only be slow
    Chunk.objects.filter(pk=held.pk).update(lease_until=held.lease_until.replace(year=2000))
    assert coordinator.sweep().resent == [held.pk]
    chunk_worker.drain()
    experiment.refresh_from_db()
    assert experiment.status == Status.SUCCEEDED and experiment.meta_test_status == MetaTestStatus.SUCCEEDED
    assert list(Generation.objects.filter(experiment=experiment).values_list("index", flat=True)) == [0, 1, 2]
    assert Candidate.objects.filter(experiment=experiment).count() == 4 * 3
    assert Chunk.objects.get(pk=held.pk).attempts == 2  # generation 0 was not redone, only the lost chunk
    assert set(Chunk.objects.exclude(pk=held.pk).values_list("attempts", flat=True)) == {1}


def test_a_cancelled_or_finished_experiment_is_not_run(make_experiment):
    queued = make_experiment()
    queued.request_cancel()
    assert run_experiment(queued.pk) == Status.CANCELLED
    done = make_experiment()
    done.claim_for_worker("t")
    done.mark_failed("earlier failure")
    assert run_experiment(done.pk) == Status.FAILED
    assert not Candidate.objects.exists()


def test_a_redelivered_search_that_was_asked_to_stop_ends_cancelled(make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    experiment.request_cancel()
    received = watch_group(experiment.pk)
    assert run_experiment(experiment.pk) == Status.CANCELLED
    [told] = received()  # the watchers learn that it has ended
    assert told["type"] == "experiment_status" and told["experiment"]["status"] == "cancelled"


def test_a_deleted_experiment_is_skipped():
    assert run_experiment(123456) == "missing"


def test_cancel_poll_reads_the_database_at_most_once_per_interval(make_experiment, django_assert_num_queries):
    experiment = make_experiment()
    now = [0.0]
    poll = CancelPoll(experiment.pk, interval=1.0, clock=lambda: now[0])
    with django_assert_num_queries(1):
        assert [poll() for _ in range(5)] == [False] * 5
    experiment.request_cancel()
    now[0] = 0.5
    with django_assert_num_queries(0):
        assert not poll()
    now[0] = 1.0
    with django_assert_num_queries(1):
        assert poll()
    now[0] = 9.0
    with django_assert_num_queries(0):
        assert poll()  # stays stopped


def test_cancel_poll_stops_a_search_whose_experiment_was_deleted(make_experiment):
    experiment = make_experiment()
    poll = CancelPoll(experiment.pk, interval=0.0)
    experiment.delete()
    assert poll()
