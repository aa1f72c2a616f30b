"""The Celery task, called in this process (the end-to-end test runs it in a real worker)."""

import pytest
import redis

from lfl_web.experiments import runner
from lfl_web.experiments.models import Candidate, Experiment, Generation, LearnedLoss, Status
from lfl_web.experiments.runner import CancelPoll, checkpoint_path
from lfl_web.experiments.tasks import requeue_unfinished, run_experiment

from .conftest import tiny_config

pytestmark = pytest.mark.django_db


class WorkerLost(BaseException):
    """Stands for a worker killed mid-search: not an Exception, so the task does not mark it failed."""


def intercept_events(monkeypatch, react):
    """Let `react(experiment_id, event)` act after each event has been recorded."""
    real = runner.record_event

    def record_then_react(experiment_id, event):
        real(experiment_id, event)
        react(experiment_id, event)

    monkeypatch.setattr(runner, "record_event", record_then_react)


def test_a_search_runs_to_success_and_stores_everything(make_experiment):
    experiment = make_experiment()
    assert run_experiment(experiment.pk) == Status.SUCCEEDED
    experiment.refresh_from_db()
    assert experiment.status == Status.SUCCEEDED and experiment.started_at and experiment.finished_at
    assert (experiment.current_generation, experiment.total_generations) == (2, 2)
    assert experiment.baseline_loss == "cross_entropy" and experiment.baseline_fitness is not None
    assert Candidate.objects.filter(experiment=experiment).count() == 4 * 2
    assert list(Generation.objects.filter(experiment=experiment).values_list("index", flat=True)) == [0, 1]
    best = LearnedLoss.objects.get(experiment=experiment, rank=1)
    assert best.validation_fitness == Generation.objects.get(experiment=experiment, index=1).hall_of_fame[0]["fitness"]
    assert checkpoint_path(experiment.pk).exists()
    # the best loss is meta-tested against the baseline on paired seeds once the search has succeeded
    assert best.meta_test["expression"] == best.expression and len(best.meta_test["learned"]) == 2
    assert len(best.meta_test["baseline"]) == 2 and best.meta_test["metric"] == "error rate"


def test_an_exception_marks_the_experiment_failed_with_its_message(user, tmp_path):
    data = tmp_path / "points.csv"
    data.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(30)))
    config = tiny_config(task={"dataset": "csv", "data_file": str(data), "kind": "classification", "max_train": None})
    experiment = Experiment.objects.create_validated(owner=user, name="csv", config=config)
    data.unlink()  # the file disappears before a worker gets to it
    assert run_experiment(experiment.pk) == Status.FAILED
    experiment.refresh_from_db()
    assert experiment.status == Status.FAILED and experiment.finished_at
    assert experiment.error.startswith("ConfigError: task.data_file:") and str(data) in experiment.error


def test_a_cancel_request_stops_the_search_and_keeps_what_it_found(make_experiment, monkeypatch):
    experiment = make_experiment(config=tiny_config(search={"generations": 3}))

    def cancel_after_first_generation(experiment_id, event):
        if event.type == "generation_finished" and event.generation == 0:
            assert Experiment.objects.get(pk=experiment_id).request_cancel()

    intercept_events(monkeypatch, cancel_after_first_generation)
    assert run_experiment(experiment.pk) == Status.CANCELLED
    experiment.refresh_from_db()
    assert experiment.cancel_requested and experiment.current_generation == 1
    assert list(Generation.objects.filter(experiment=experiment).values_list("index", flat=True)) == [0]
    assert LearnedLoss.objects.filter(experiment=experiment).exists()


def test_a_redelivered_search_resumes_from_its_checkpoint(make_experiment, monkeypatch):
    experiment = make_experiment(config=tiny_config(search={"generations": 3}))

    def die_in_second_generation(experiment_id, event):
        if event.type == "candidate_evaluated" and event.generation == 1:
            raise WorkerLost

    intercept_events(monkeypatch, die_in_second_generation)
    with pytest.raises(WorkerLost):
        run_experiment(experiment.pk)
    assert Experiment.objects.get(pk=experiment.pk).status == Status.RUNNING
    monkeypatch.undo()

    seen = []
    intercept_events(monkeypatch, lambda _, event: seen.append(event))
    assert run_experiment(experiment.pk) == Status.SUCCEEDED
    assert seen[0].type == "search_started" and seen[0].start_generation == 1  # generation 0 was not redone
    assert list(Generation.objects.filter(experiment=experiment).values_list("index", flat=True)) == [0, 1, 2]
    assert Candidate.objects.filter(experiment=experiment).count() == 4 * 3


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
    assert run_experiment(experiment.pk) == Status.CANCELLED


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


def test_requeue_unfinished_sends_queued_and_interrupted_searches_to_the_broker(make_experiment, embedded_redis):
    queued, running, finished = make_experiment(), make_experiment(), make_experiment()
    running.claim_for_worker("lost with the old stack")
    finished.request_cancel()
    assert requeue_unfinished(embedded_redis.url) == [queued.pk, running.pk]
    assert redis.Redis.from_url(embedded_redis.url).llen("celery") == 2  # Celery's default queue
