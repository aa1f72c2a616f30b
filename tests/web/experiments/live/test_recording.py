
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from lfl_web.experiments.live import recording
from lfl_web.experiments.live.recording import (
    UPDATE_MESSAGE,
    broadcast_status,
    group_name,
    json_ready,
    publish,
    record_event,
)
from lfl_web.experiments.models import Candidate, Experiment, Generation, MetaTestStatus, Status
from lfl_web.experiments.results.dashboard import STATUS_PANELS
from search_engine.evolution.events import (
    CandidateEvaluated,
    GenerationFinished,
    HallOfFameEntry,
    SearchFinished,
    SearchStarted,
)

from ...conftest import tiny_config, watch_group

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
    assert message == {"type": UPDATE_MESSAGE, "event": sent}
    assert sent["type"] == "candidate_evaluated" and sent["index"] == 3
    assert list(sent["panels"]) == ["candidates-panel", "workers-panel"], "rendered from the row just saved"


def test_a_watcher_of_the_group_receives_the_stored_event(make_experiment):
    experiment = make_experiment()
    layer = get_channel_layer()

    async def watch_and_record():
        channel = await layer.new_channel()
        await layer.group_add(group_name(experiment.pk), channel)
        await sync_to_async(record_event)(experiment.pk, generation())
        return await layer.receive(channel)

    message = async_to_sync(watch_and_record)()
    assert message["type"] == UPDATE_MESSAGE and message["event"]["type"] == "generation_finished"
    assert message["event"]["mean_fitness"] is None  # NaN is not JSON
    assert message["event"]["chart"]["points"] == [{"generation": 0, "best": 0.12, "mean": None}]
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


# ----------------------------------------------------------------------------- what each message carries


def test_a_candidate_event_carries_the_candidates_table_of_its_generation(make_experiment):
    experiment = make_experiment()
    record_event(experiment.pk, candidate(index=0, fitness=0.2))
    received = watch_group(experiment.pk)
    record_event(experiment.pk, candidate(index=1, fitness=None))
    [message] = received()
    assert (message["type"], list(message["panels"]), message["chart"]) == (
        "candidate_evaluated", ["candidates-panel", "workers-panel"], None)
    table = message["panels"]["candidates-panel"]
    assert table.count(">sub(f, y)</span>") == 2  # the one stored before and the new one
    assert "0.2000" in table and "rejected: diverged" in table


def test_a_generation_event_carries_the_counters_best_hall_of_fame_and_its_chart_point(make_experiment):
    experiment = make_experiment(baseline_loss="cross_entropy", baseline_fitness=0.3)
    received = watch_group(experiment.pk)
    record_event(experiment.pk, generation())
    [message] = received()
    assert set(message["panels"]) == {"progress-panel", "best-panel", "hall-of-fame-panel", "candidates-panel",
                                      "pareto-panel", "workers-panel"}
    assert 'id="generation-counter">1 / 2<' in message["panels"]["progress-panel"]
    assert 'data-latex="-y \\log f"' in message["panels"]["best-panel"] and "0.1200" in message["panels"]["best-panel"]
    assert ENTRY.expression in message["panels"]["hall-of-fame-panel"]
    assert message["chart"] == {"metric": experiment.metric, "baseline": {"loss": "cross_entropy", "fitness": 0.3},
                                "points": [{"generation": 0, "best": 0.12, "mean": None}]}


def test_search_finished_is_followed_by_the_panels_of_the_new_status(make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    record_event(experiment.pk, generation())
    received = watch_group(experiment.pk)
    record_event(experiment.pk, finished())
    finished_message, status = received()
    assert finished_message["type"] == "search_finished" and finished_message["panels"] == {}
    assert status["type"] == "experiment_status" and status["experiment"]["status"] == "succeeded"
    assert tuple(status["panels"]) == STATUS_PANELS
    assert 'data-status="succeeded"' in status["panels"]["status"] and ">Succeeded</span>" in status["panels"]["status"]
    assert 'data-finished="true"' in status["panels"]["status"]
    assert 'data-expects-news="true"' in status["panels"]["status"]  # the meta-test is still to come
    loss = experiment.learned_losses.get(rank=1)
    assert f"/losses/{loss.pk}/download/torch/" in status["panels"]["hall-of-fame-panel"]
    assert 'data-view="running"' in status["panels"]["meta-test-panel"]
    assert 'id="loss-shape-data"' in status["panels"]["loss-shape-panel"]


def test_meta_test_news_carries_the_meta_test_panel_and_then_ends_the_stream(make_experiment):
    experiment = make_experiment(config=tiny_config(meta_test={"steps": 20, "seeds": 3}))
    experiment.claim_for_worker("t")
    record_event(experiment.pk, generation())
    record_event(experiment.pk, finished())
    received = watch_group(experiment.pk)
    experiment.count_meta_test_seed()
    publish(experiment.pk, {"type": "meta_test_progress", "seeds_done": 1, "seeds": 3})
    record = {"metric": experiment.metric, "seeds": [0, 1, 2], "learned_mean": 0.1, "learned_std": 0.01,
              "baseline_mean": 0.2, "baseline_std": 0.02, "wins": 2, "steps": 20, "p_value": None}
    experiment.finish_meta_test(record)
    publish(experiment.pk, {"type": "meta_test_finished", "learned_loss": 1, "meta_test": record})
    progress, results = received()
    assert list(progress["panels"]) == ["meta-test-panel"] and progress["seeds_done"] == 1
    assert "1 of 3 seeds done." in progress["panels"]["meta-test-panel"]
    assert set(results["panels"]) == {"meta-test-panel", "status", "best-panel"}  # the chosen loss is named
    assert "Learned better on 2 of 3 seeds" in results["panels"]["meta-test-panel"]
    assert 'data-expects-news="false"' in results["panels"]["status"]  # nothing more to come: the page hangs up


def test_broadcast_status_sends_the_row_and_the_panels_it_drives(make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    experiment.request_cancel()
    received = watch_group(experiment.pk)
    broadcast_status(experiment.pk)
    [message] = received()
    assert message["experiment"]["cancel_requested"] is True and tuple(message["panels"]) == STATUS_PANELS
    assert 'data-cancel-requested="true"' in message["panels"]["status"]
    assert "Running (stopping)</span>" in message["panels"]["status"]
    assert "training…" in message["panels"]["progress-panel"]  # no baseline yet: the worker is training it
    assert 'aria-labelledby="meta-test-title" hidden>' in message["panels"]["meta-test-panel"]  # none yet


def test_a_deleted_experiment_announces_nothing(make_experiment):
    experiment = make_experiment()
    received = watch_group(experiment.pk)
    pk = experiment.pk
    experiment.delete()
    broadcast_status(pk)
    assert publish(pk, {"type": "meta_test_progress", "seeds_done": 1, "seeds": 2}) is None
    assert received() == []
