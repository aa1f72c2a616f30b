import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from lfl_web.experiments import recording
from lfl_web.experiments.models import Candidate, Experiment, Generation, MetaTestStatus, Status
from lfl_web.experiments.recording import group_name, json_ready, record_event
from search_engine.evolution.events import (
    CandidateEvaluated,
    GenerationFinished,
    HallOfFameEntry,
    SearchFinished,
    SearchStarted,
)

pytestmark = pytest.mark.django_db

ENTRY = HallOfFameEntry("mul(-1, mul(y, log(f)))", "ce", r"-y \log f", 0.12, 6, 0)


def candidate(index=0, fitness=0.2, **extra):
    return CandidateEvaluated(generation=0, index=index, expression="sub(f, y)", canonical_key="f - y", latex="f - y",
                              fitness=fitness, rejection_reason=None if fitness is not None else "diverged",
                              cache_hit=False, **extra)


def generation(index=0, hall=(ENTRY,)):
    return GenerationFinished(generation=index, best_fitness=0.12, mean_fitness=float("nan"), median_fitness=0.2,
                              evaluated=4, rejected=1, cache_hits=0, best_expression=ENTRY.expression,
                              best_latex=ENTRY.latex, hall_of_fame=hall, seconds=1.5)


def finished(status="completed", best=ENTRY):
    return SearchFinished(status=status, generations_completed=1, best=best, evaluated=4, rejected=1, cache_hits=0)


class SpyLayer:
    """Records what was sent and whether the row was already in the database at that moment.

    (sync_to_async, not database_sync_to_async: the latter closes the connection that holds the
    test's transaction; consumer tests use transactional_db for that reason.)
    """

    def __init__(self):
        self.sent = []

    async def group_send(self, group, message):
        stored = await sync_to_async(Candidate.objects.filter(index=message["event"].get("index")).exists)()
        self.sent.append((group, message, stored))


def test_json_ready_turns_tuples_into_lists_and_non_finite_numbers_into_none():
    assert json_ready({"a": (1.0, float("inf")), "b": [float("nan"), {"c": 2}]}) == {"a": [1.0, None], "b": [None, {"c": 2}]}


def test_record_event_saves_before_it_announces(make_experiment, monkeypatch):
    spy = SpyLayer()
    monkeypatch.setattr(recording, "get_channel_layer", lambda: spy)
    experiment = make_experiment()
    sent = record_event(experiment.pk, candidate(index=3))
    [(group, message, stored)] = spy.sent
    assert stored, "the candidate row must exist before the message is sent"
    assert group == f"experiment_{experiment.pk}"
    assert message == {"type": "candidate_evaluated", "event": sent}


def test_a_watcher_of_the_group_receives_the_stored_event(make_experiment):
    experiment = make_experiment()
    layer = get_channel_layer()

    async def watch_and_record():
        channel = await layer.new_channel()
        await layer.group_add(group_name(experiment.pk), channel)
        await sync_to_async(record_event)(experiment.pk, generation())
        return await layer.receive(channel)

    message = async_to_sync(watch_and_record)()
    assert message["type"] == "generation_finished"
    assert message["event"]["mean_fitness"] is None  # NaN is not JSON
    assert message["event"]["hall_of_fame"][0]["expression"] == ENTRY.expression
    row = Generation.objects.get(experiment=experiment, index=0)
    assert (row.best_fitness, row.mean_fitness, row.evaluated, row.rejected) == (0.12, None, 4, 1)
    assert Experiment.objects.get(pk=experiment.pk).current_generation == 1


def test_redelivered_events_do_not_duplicate_rows(make_experiment):
    experiment = make_experiment()
    for _ in range(2):
        record_event(experiment.pk, candidate(index=0, fitness=None))
        record_event(experiment.pk, generation())
    assert Candidate.objects.filter(experiment=experiment).count() == 1
    assert Generation.objects.filter(experiment=experiment).count() == 1
    assert Candidate.objects.get().rejection_reason == "diverged"


def test_search_started_stores_the_baseline_and_the_plan(make_experiment):
    experiment = make_experiment(total_generations=0)
    record_event(experiment.pk, SearchStarted(config={}, generations=7, population_size=4, start_generation=2,
                                              baseline_loss="squared_error", baseline_fitness=0.8))
    experiment.refresh_from_db()
    assert (experiment.total_generations, experiment.current_generation) == (7, 2)
    assert (experiment.baseline_loss, experiment.baseline_fitness, experiment.metric) == ("squared_error", 0.8, "MSE")


def test_search_started_stores_the_evaluation_plan_and_a_label(make_experiment):
    experiment = make_experiment()
    assert experiment.evaluation_plan is None and experiment.evaluation_label == ""
    plan = {"strategy": "batched", "chunk": 8, "min_batch": 2, "reason": "measured", "device": "cpu"}
    record_event(experiment.pk, SearchStarted(config={}, generations=3, population_size=8, start_generation=0,
                                              baseline_loss="cross_entropy", baseline_fitness=0.1, plan=plan))
    experiment.refresh_from_db()
    assert experiment.evaluation_plan == plan
    assert experiment.state_dict()["evaluation_label"] == "batched, up to 8 per program, cpu"
    experiment.evaluation_plan = {"strategy": "sequential", "device": "cuda"}
    assert experiment.evaluation_label == "sequential, cuda"


@pytest.mark.parametrize(("search_status", "status"), [("completed", Status.SUCCEEDED), ("stopped", Status.CANCELLED)])
def test_search_finished_stores_learned_losses_and_the_status(make_experiment, search_status, status):
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    weighted = HallOfFameEntry("add(f, y)", "f + y", "f + y", 0.3, 3, 1, weights=(0.5, 2.0))
    record_event(experiment.pk, generation(hall=(ENTRY, weighted)))
    record_event(experiment.pk, finished(search_status))
    experiment.refresh_from_db()
    assert experiment.status == status and experiment.finished_at
    losses = list(experiment.learned_losses.order_by("rank"))
    assert [loss.expression for loss in losses] == [ENTRY.expression, "add(f, y)"]
    assert losses[1].weights == [0.5, 2.0] and losses[1].generation == 1
    # a completed search goes on to the meta-test of its best loss in the same update; a stopped one does not
    expected = MetaTestStatus.RUNNING if status == Status.SUCCEEDED else MetaTestStatus.NOT_RUN
    assert experiment.meta_test_status == expected


def test_a_completed_search_that_kept_no_loss_waits_for_no_meta_test(make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    record_event(experiment.pk, finished(best=None))
    experiment.refresh_from_db()
    assert experiment.status == Status.SUCCEEDED and experiment.meta_test_status == MetaTestStatus.NOT_RUN


def test_candidate_refined_keeps_the_refined_weights_only_when_no_worse(make_experiment):
    experiment = make_experiment()
    record_event(experiment.pk, candidate(index=0, fitness=0.2))
    refined = {"type": "candidate_refined", "generation": 0, "index": 0, "expression": "sub(f, y)",
               "canonical_key": "f - y", "symbolic_fitness": 0.2, "fitness": 0.15, "weights": (1.5, 0.5)}
    record_event(experiment.pk, refined)
    row = Candidate.objects.get()
    assert (row.fitness, row.symbolic_fitness, row.weights) == (0.15, 0.2, [1.5, 0.5])
    record_event(experiment.pk, {**refined, "fitness": 0.9, "weights": (9.0,)})
    assert Candidate.objects.get().fitness == 0.15


def test_unknown_event_types_are_ignored_without_breaking_the_search(make_experiment, monkeypatch):
    spy = SpyLayer()
    monkeypatch.setattr(recording, "get_channel_layer", lambda: spy)
    experiment = make_experiment()
    record_event(experiment.pk, {"type": "from_a_newer_engine", "x": 1})
    assert spy.sent == [] and not Candidate.objects.exists()


def test_a_failed_announcement_keeps_the_saved_row(make_experiment, monkeypatch):
    class BrokenLayer:
        async def group_send(self, group, message):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(recording, "get_channel_layer", BrokenLayer)
    experiment = make_experiment()
    record_event(experiment.pk, candidate())
    assert Candidate.objects.filter(experiment=experiment).exists()
