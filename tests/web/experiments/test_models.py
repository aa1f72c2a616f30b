import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError

from lfl_web.experiments.models import Candidate, Experiment, Generation, LearnedLoss, Status
from lfl_web.experiments.submit.validation import errors_by_field

from ..conftest import tiny_config

pytestmark = pytest.mark.django_db


def hall_entry(expression="mul(-1, mul(y, log(f)))", fitness=0.1, size=6, **extra):
    return {"expression": expression, "canonical_key": expression, "latex": "L", "fitness": fitness,
            "size": size, "generation": 0, **extra}


def test_create_validated_stores_the_full_configuration_with_defaults(user):
    experiment = Experiment.objects.create_validated(owner=user, name="digits", config=tiny_config())
    experiment.refresh_from_db()
    assert experiment.status == Status.QUEUED and experiment.total_generations == 2
    assert experiment.config["search"]["crossover_rate"] == 0.7  # default filled in
    assert experiment.config["task"]["model"] == "logistic"


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        (tiny_config(search={"population_size": 1}), "search.population_size", "must be at least 2"),
        (tiny_config(task={"datset": "digits"}), "task.datset", "unknown field (did you mean 'dataset'?)"),
        (tiny_config(task={"dataset": "nope"}), "task.dataset", "unknown dataset 'nope'"),
        ("configs/quick.json", "config", "must be a JSON object, got str"),  # never read as a server path
    ],
)
def test_bad_configuration_names_the_field_and_stores_nothing(user, config, field, message):
    with pytest.raises(ValidationError) as caught:
        Experiment.objects.create_validated(owner=user, name="bad", config=config)
    shown = f"{field}: {message}" if field != "config" else message  # as the admin shows it
    assert any(shown in m for m in caught.value.message_dict["config"])
    assert message in errors_by_field(caught.value)[field]  # the field kept apart from its message
    assert not Experiment.objects.exists()


def test_missing_name_is_reported_together_with_config_errors(user):
    with pytest.raises(ValidationError) as caught:
        Experiment.objects.create_validated(owner=user, name="", config=tiny_config(search={"generations": 0}))
    assert set(caught.value.message_dict) == {"name", "config"}
    errors = errors_by_field(caught.value)
    assert set(errors) == {"name", "search.generations"} and errors["search.generations"].startswith("must be")


def test_visible_to_hides_other_peoples_private_experiments(user, other_user, make_experiment, django_user_model):
    shared = make_experiment(owner=other_user, name="shared")
    secret = make_experiment(owner=other_user, name="secret", private=True)
    mine = make_experiment(name="mine", private=True)
    assert set(Experiment.objects.visible_to(user)) == {shared, mine}
    assert set(Experiment.objects.visible_to(other_user)) == {shared, secret}
    assert not Experiment.objects.visible_to(AnonymousUser()).exists()
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    assert set(Experiment.objects.visible_to(staff)) == {shared, secret, mine}
    assert secret.can_be_viewed_by(other_user) and not secret.can_be_viewed_by(user)


def test_request_cancel_cancels_a_queued_experiment_at_once(make_experiment):
    experiment = make_experiment()
    assert experiment.request_cancel()
    assert experiment.status == Status.CANCELLED and experiment.cancel_requested and experiment.finished_at
    assert not experiment.request_cancel()  # nothing left to stop


def test_request_cancel_on_a_running_experiment_only_raises_the_flag(make_experiment):
    experiment = make_experiment()
    assert experiment.claim_for_worker("task-1")
    assert experiment.request_cancel()
    assert experiment.status == Status.RUNNING and experiment.cancel_requested
    assert not experiment.claim_for_worker("task-2")  # a redelivery must not restart it


def test_claim_for_worker_keeps_the_first_start_time(make_experiment):
    experiment = make_experiment()
    assert experiment.claim_for_worker("task-1")
    first_start = experiment.started_at
    assert experiment.claim_for_worker("task-1")  # redelivered after a lost worker
    assert experiment.started_at == first_start and experiment.celery_task_id == "task-1"
    experiment.mark_failed("boom")
    assert not experiment.claim_for_worker("task-3") and experiment.status == Status.FAILED


def test_mark_finished_keeps_the_last_hall_of_fame_as_learned_losses(make_experiment):
    experiment = make_experiment(baseline_loss="cross_entropy", baseline_fitness=0.3)
    experiment.claim_for_worker("t")
    hall = [hall_entry("a", 0.1, weights=[1.0, 0.5]), hall_entry("b", 0.2)]
    Generation.objects.create(experiment=experiment, index=0, hall_of_fame=[hall_entry("old", 0.9)])
    Generation.objects.create(experiment=experiment, index=1, hall_of_fame=hall)
    assert experiment.mark_finished(Status.SUCCEEDED)
    losses = list(experiment.learned_losses.order_by("rank"))
    assert [(x.rank, x.expression, x.validation_fitness) for x in losses] == [(1, "a", 0.1), (2, "b", 0.2)]
    assert losses[0].weights == [1.0, 0.5] and losses[1].weights is None
    assert (losses[0].dataset, losses[0].model, losses[0].metric) == ("digits", "logistic", "error rate")
    assert losses[0].baseline_fitness == 0.3 and losses[0].complexity == 6
    assert not experiment.mark_finished(Status.CANCELLED)  # already finished: status stays
    assert experiment.status == Status.SUCCEEDED and experiment.learned_losses.count() == 2


def test_mark_finished_without_generations_keeps_at_least_the_best(make_experiment):
    experiment = make_experiment()
    experiment.mark_finished(Status.CANCELLED, best=hall_entry("best", 0.4))
    assert [x.expression for x in experiment.learned_losses.all()] == ["best"]


@pytest.mark.parametrize(
    ("fields", "kind", "metric"),
    [
        ({"baseline_loss": "squared_error"}, "regression", "MSE"),  # what the search reported wins
        ({"config": tiny_config(task={"dataset": "diabetes", "model": "mlp"})}, "regression", "MSE"),
        ({"config": tiny_config(task={"dataset": "csv", "kind": "regression"})}, "regression", "MSE"),
        ({"config": tiny_config(task={"dataset": "csv"})}, "classification", "error rate"),
        ({}, "classification", "error rate"),
    ],
)
def test_task_kind_and_metric_come_from_the_catalogue(make_experiment, fields, kind, metric):
    experiment = make_experiment(**fields)
    assert (experiment.task_kind, experiment.metric) == (kind, metric)


def test_snapshot_holds_the_row_generations_latest_candidates_and_losses(make_experiment):
    experiment = make_experiment()
    for generation in (0, 1):
        Generation.objects.create(experiment=experiment, index=generation, best_fitness=0.5 - generation / 10)
        for index in (0, 1):
            Candidate.objects.create(experiment=experiment, generation=generation, index=index,
                                     expression=f"g{generation}c{index}", canonical_key="k")
    snapshot = experiment.snapshot()
    assert snapshot["type"] == "snapshot"
    assert snapshot["experiment"]["id"] == experiment.pk and snapshot["experiment"]["status"] == "queued"
    assert snapshot["experiment"]["owner"] == "ada"
    assert [g["generation"] for g in snapshot["generations"]] == [0, 1]
    assert [c["expression"] for c in snapshot["candidates"]] == ["g1c0", "g1c1"]
    assert snapshot["learned_losses"] == []


def test_leaderboard_lists_finished_searches_best_first_per_task(make_experiment):
    done, running = make_experiment(name="done"), make_experiment(name="running")
    for experiment in (done, running):
        experiment.claim_for_worker("t")
    LearnedLoss.objects.replace_for(done, [hall_entry("x", 0.3), hall_entry("y", 0.1, size=3)])
    LearnedLoss.objects.replace_for(running, [hall_entry("z", 0.05)])
    Experiment.objects.filter(pk=done.pk).update(status=Status.SUCCEEDED)
    board = list(LearnedLoss.objects.for_leaderboard())
    assert [loss.expression for loss in board] == ["y", "x"]


def test_reset_unfinished_requeues_running_searches_and_asked_to_stop_finds_those_to_cancel(make_experiment):
    queued, running, stopping, done = (make_experiment(name=n) for n in ("q", "r", "s", "d"))
    for experiment in (running, stopping, done):
        experiment.claim_for_worker("t")
    stopping.request_cancel()
    done.mark_finished(Status.SUCCEEDED)
    assert list(Experiment.objects.asked_to_stop()) == [stopping]
    Experiment.objects.get(pk=stopping.pk).mark_finished(Status.CANCELLED)  # what requeue_unfinished does first
    assert Experiment.objects.reset_unfinished() == [queued.pk, running.pk]
    assert Experiment.objects.get(pk=running.pk).status == Status.QUEUED
    assert Experiment.objects.get(pk=stopping.pk).status == Status.CANCELLED


def test_server_paths_outside_the_data_folders_are_refused(user, settings, tmp_path):
    settings.LFL_DATA_DIRS = [tmp_path / "datasets"]
    for bad in ({"dataset": "csv", "data_file": "/etc/passwd", "kind": "classification"},
                {"dataset": "mnist", "model": "lenet5", "data_root": str(tmp_path / "datasets" / ".." / "elsewhere")}):
        with pytest.raises(ValidationError) as info:
            Experiment.objects.create_validated(owner=user, name="x", config=tiny_config(task=bad))
        [(field, message)] = errors_by_field(info.value).items()
        assert field == ("task.data_file" if "data_file" in bad else "task.data_root")
        assert "outside the folders this server reads data from" in message
    assert not Experiment.objects.exists()
    # inside an allowed folder the path reaches the engine's own checks (here: the files are missing)
    with pytest.raises(ValidationError) as info:
        Experiment.objects.create_validated(owner=user, name="x", config=tiny_config(
            task={"dataset": "mnist", "model": "lenet5", "data_root": str(tmp_path / "datasets" / "mnist")}))
    assert "task.data_root" in str(info.value) and "outside the folders" not in str(info.value)
