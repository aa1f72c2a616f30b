"""The services: each changes an experiment's state and tells its watchers (the in-memory channel
layer of this process), sends work to Celery only once the row is committed, refuses whoever may
not change the experiment, and stores nothing on bad input."""


import pytest
import redis
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from lfl_web.experiments import broker, services
from lfl_web.experiments.fanout.checkpoint_file import checkpoint_path
from lfl_web.experiments.models import Experiment, LearnedLoss, MetaTestStatus, Status
from lfl_web.experiments.submit.validation import InvalidExperiment
from search_engine.config import load_config
from search_engine.limits import work_estimate

from ..conftest import tiny_config, watch_group

pytestmark = pytest.mark.django_db

GOOD_CSV = "a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40))


@pytest.fixture
def sent(monkeypatch):
    """(task name, args) of every message sent to Celery."""
    calls = []
    monkeypatch.setattr(broker.celery_app, "send_task",
                        lambda name, args=None, **options: calls.append((name, tuple(args))))
    return calls


def statuses(messages) -> list[str]:
    return [m["experiment"]["status"] for m in messages if m["type"] == "experiment_status"]


def stored_uploads(folder) -> list:
    return sorted(folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------- create_experiment


def test_create_stores_the_validated_experiment_and_sends_it_once_committed(user, sent,
                                                                            django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        experiment = services.create_experiment(owner=user, name="tiny", config=tiny_config(), private=True)
        assert sent == []  # a worker must not look for a row that is not committed yet
    assert len(callbacks) == 1
    callbacks[0]()
    assert sent == [(broker.RUN_EXPERIMENT, (experiment.pk,))]
    stored = Experiment.objects.get()
    assert (stored.owner, stored.name, stored.private, stored.status) == (user, "tiny", True, Status.QUEUED)
    assert stored.config["search"]["crossover_rate"] == 0.7 and stored.total_generations == 2


def test_the_task_name_sent_is_the_celery_tasks_name():
    from lfl_web.experiments.tasks import run_experiment

    assert run_experiment.name == broker.RUN_EXPERIMENT


def test_a_bad_configuration_is_a_dict_of_dotted_fields_and_nothing_is_stored(user, sent,
                                                                               django_capture_on_commit_callbacks):
    config = tiny_config(search={"crossover_rate": 1.5, "population_size": 1})
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(InvalidExperiment) as caught:
        services.create_experiment(owner=user, name="", config=config)
    errors = caught.value.errors
    assert errors["search.crossover_rate"] == "must be in [0, 1], got 1.5"
    assert errors["search.population_size"].startswith("must be at least 2")
    assert {"name", "search.crossover_rate", "search.population_size"} <= set(errors)
    assert all("." in field for field in set(errors) - {"name"})  # each under its dotted configuration field
    assert not Experiment.objects.exists() and sent == []


def test_server_paths_outside_the_data_folders_are_entries_of_the_same_dict(user, sent, tmp_path, settings):
    settings.LFL_DATA_DIRS = [tmp_path / "datasets"]
    config = tiny_config(task={"dataset": "mnist", "model": "lenet5", "data_root": "/etc"})
    with pytest.raises(InvalidExperiment) as caught:
        services.create_experiment(owner=user, name="x", config=config)
    assert list(caught.value.errors) == ["task.data_root"]
    assert "outside the folders this server reads data from" in caught.value.errors["task.data_root"]
    assert not Experiment.objects.exists()


def test_an_upload_is_stored_under_a_generated_name_as_the_data_file(user, sent, upload_dir):
    upload = SimpleUploadedFile("../my data.csv", GOOD_CSV.encode())
    config = tiny_config(task={"dataset": "csv", "model": "mlp", "kind": "classification", "max_train": None})
    experiment = services.create_experiment(owner=user, name="csv", config=config, upload=upload)
    [stored] = stored_uploads(upload_dir)
    assert stored.suffix == ".csv" and "my data" not in stored.name and stored.read_text() == GOOD_CSV
    assert experiment.config["task"]["data_file"] == str(stored)


def test_a_bad_upload_is_deleted_and_the_message_names_the_users_file(user, sent, upload_dir):
    upload = SimpleUploadedFile("points.csv", b"a,b,label\n1,2,yes\n3,4\n")
    config = tiny_config(task={"dataset": "csv", "model": "mlp", "kind": "classification"})
    with pytest.raises(InvalidExperiment) as caught:
        services.create_experiment(owner=user, name="csv", config=config, upload=upload)
    message = caught.value.errors["task.data_file"]
    assert "line 3" in message and str(upload_dir) not in message
    assert stored_uploads(upload_dir) == [] and not Experiment.objects.exists()


def test_a_one_row_upload_is_refused_at_the_data_file_before_any_worker_sees_it(user, sent, upload_dir):
    upload = SimpleUploadedFile("one.csv", b"a,b,label\n1,2,yes\n")
    config = tiny_config(task={"dataset": "csv", "model": "mlp", "kind": "classification", "max_train": None})
    with pytest.raises(InvalidExperiment) as caught:
        services.create_experiment(owner=user, name="csv", config=config, upload=upload)
    assert caught.value.errors == {"task.data_file": "data file one.csv has 1 sample(s); the training, validation "
                                                     "and test splits need at least 4 (2 to train on, 1 for each "
                                                     "other split)"}
    assert stored_uploads(upload_dir) == [] and not Experiment.objects.exists() and sent == []


def test_unbounded_work_is_refused_by_field_and_over_the_ceiling_as_a_whole(user, sent, settings):
    config = tiny_config(search={"population_size": 10**9, "generations": 10**9})
    with pytest.raises(InvalidExperiment) as caught:
        services.create_experiment(owner=user, name="huge", config=config)
    assert caught.value.errors["search.population_size"] == "must be at most 10000, got 1000000000"
    assert caught.value.errors["search.generations"] == "must be at most 10000, got 1000000000"
    # tiny_config at the product's defaults: 4 x 2 candidates, 8 x 10 rejection steps; meta-test 2 seeds x 2 x
    # 20 steps and, tuned by default, the final choice's 4 x 11 x 2 x 20 (the meta-test reuses its tuning)
    # and 2 x 2 seeds x 20 at the tuned rates: 1920 (the fitness steps: test_bounds counts them)
    defaults = tiny_config(product_defaults=True)
    work = work_estimate(load_config(defaults, check_data=False))
    assert (work["rejection_steps"], work["meta_test_steps"]) == (80, 1920)
    total = work["total_steps"]
    settings.LFL_MAX_TRAINING_STEPS = total - 1
    with pytest.raises(InvalidExperiment) as caught:
        services.create_experiment(owner=user, name="tiny", config=defaults)
    assert list(caught.value.errors) == ["config"]
    assert caught.value.errors["config"].startswith(
        f"asks for {total:,} training steps in total ({work['fitness_steps']:,} fitness, 80 rejection, 0 local "
        f"search, 1,920 meta-test), more than the {total - 1:,} this server allows (LFL_MAX_TRAINING_STEPS)")
    assert not Experiment.objects.exists() and sent == []
    settings.LFL_MAX_TRAINING_STEPS = total
    services.create_experiment(owner=user, name="tiny", config=defaults)


def test_each_user_may_have_only_so_many_queued_or_running_staff_included(user, other_user, sent, settings,
                                                                         upload_dir, make_experiment):
    settings.LFL_MAX_QUEUED_PER_USER = 2
    user.is_staff = True
    user.save()
    make_experiment(status=Status.RUNNING)
    services.create_experiment(owner=user, name="second", config=tiny_config())
    upload = SimpleUploadedFile("points.csv", GOOD_CSV.encode())
    with pytest.raises(services.TooManyExperiments, match=r"You have 2 experiments queued or running.*"
                                                         r"LFL_MAX_QUEUED_PER_USER = 2"):
        services.create_experiment(owner=user, name="third", config=tiny_config(task={"dataset": "csv"}),
                                   upload=upload)
    assert Experiment.objects.count() == 2 and stored_uploads(upload_dir) == []
    services.create_experiment(owner=other_user, name="theirs", config=tiny_config())  # a limit per user
    Experiment.objects.filter(owner=user, status=Status.RUNNING).update(status=Status.SUCCEEDED)
    services.create_experiment(owner=user, name="third", config=tiny_config())  # a finished one freed a place
    settings.LFL_MAX_QUEUED_PER_USER = 0  # no limit
    services.create_experiment(owner=user, name="fourth", config=tiny_config())
    assert Experiment.objects.filter(owner=user).unfinished().count() == 3


# ----------------------------------------------------------------------------- cancel_experiment


def test_cancelling_a_queued_search_ends_it_and_tells_the_watchers(user, make_experiment):
    experiment = make_experiment()
    told = watch_group(experiment.pk)
    assert services.cancel_experiment(experiment=experiment, user=user)
    assert Experiment.objects.get(pk=experiment.pk).status == Status.CANCELLED
    assert statuses(told()) == ["cancelled"]


def test_cancelling_a_running_search_raises_its_flag_and_tells_the_watchers(user, make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("task-1")
    told = watch_group(experiment.pk)
    assert services.cancel_experiment(experiment=experiment, user=user)
    [message] = told()
    assert message["experiment"]["status"] == "running" and message["experiment"]["cancel_requested"]
    assert not services.cancel_experiment(experiment=experiment, user=user)  # asked already: no news
    assert told() == []


def test_someone_else_may_not_cancel_and_nothing_changes(other_user, make_experiment, django_user_model):
    experiment = make_experiment()
    told = watch_group(experiment.pk)
    with pytest.raises(PermissionDenied, match="owner"):
        services.cancel_experiment(experiment=experiment, user=other_user)
    assert not Experiment.objects.get(pk=experiment.pk).cancel_requested and told() == []
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    assert services.cancel_experiment(experiment=experiment, user=staff)


# ----------------------------------------------------------------------------- delete_experiment


def test_delete_removes_rows_checkpoint_and_upload_but_no_other_file(user, make_experiment, upload_dir, tmp_path):
    upload_dir.mkdir()
    upload = upload_dir / "0123abcd.csv"
    upload.write_text(GOOD_CSV)
    experiment = make_experiment(config=tiny_config(task={"data_file": str(upload)}), status=Status.SUCCEEDED)
    LearnedLoss.objects.replace_for(experiment, [{"expression": "sub(f, y)", "fitness": 0.2}])
    checkpoint = checkpoint_path(experiment.pk)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{}")
    elsewhere = tmp_path / "mine.csv"
    elsewhere.write_text(GOOD_CSV)
    kept = make_experiment(config=tiny_config(task={"data_file": str(elsewhere)}), status=Status.FAILED)
    services.delete_experiment(experiment=experiment, user=user)
    services.delete_experiment(experiment=kept, user=user)
    assert not Experiment.objects.exists() and not LearnedLoss.objects.exists()
    assert not upload.exists() and not checkpoint.exists()
    assert elsewhere.exists()  # not an upload: never deleted


def test_a_search_still_running_is_not_deleted(user, make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("task-1")
    with pytest.raises(ValidationError, match="stop it first"):
        services.delete_experiment(experiment=experiment, user=user)
    assert Experiment.objects.filter(pk=experiment.pk).exists()


def test_someone_else_may_not_delete(other_user, make_experiment):
    experiment = make_experiment(status=Status.SUCCEEDED)
    with pytest.raises(PermissionDenied, match="owner"):
        services.delete_experiment(experiment=experiment, user=other_user)
    assert Experiment.objects.filter(pk=experiment.pk).exists()


# ----------------------------------------------------------------------------- the worker's changes


def test_start_run_marks_running_and_says_so_unless_cancelled(make_experiment):
    experiment, cancelled = make_experiment(), make_experiment()
    cancelled.request_cancel()
    told, told_cancelled = watch_group(experiment.pk), watch_group(cancelled.pk)
    assert services.start_run(experiment=experiment, task_id="task-1")
    assert experiment.status == Status.RUNNING and experiment.celery_task_id == "task-1"
    assert statuses(told()) == ["running"]
    assert not services.start_run(experiment=cancelled, task_id="task-2")
    assert told_cancelled() == []


def test_end_cancelled_finishes_a_search_asked_to_stop(make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    experiment.request_cancel()
    told = watch_group(experiment.pk)
    services.end_cancelled(experiment=experiment)
    assert experiment.status == Status.CANCELLED and statuses(told()) == ["cancelled"]
    services.end_cancelled(experiment=experiment)  # already finished: no news
    assert told() == []


def test_mark_failed_records_the_error_and_says_so_once(make_experiment):
    experiment = make_experiment()
    experiment.claim_for_worker("t")
    told = watch_group(experiment.pk)
    services.mark_failed(experiment=experiment, error="RuntimeError: boom")
    [message] = told()
    assert message["experiment"]["status"] == "failed" and message["experiment"]["error"] == "RuntimeError: boom"
    services.mark_failed(experiment=experiment, error="later")  # finished: nothing changes
    assert Experiment.objects.get(pk=experiment.pk).error == "RuntimeError: boom" and told() == []


def meta_testing(make_experiment):
    experiment = make_experiment(status=Status.SUCCEEDED, meta_test_status=MetaTestStatus.RUNNING)
    LearnedLoss.objects.replace_for(experiment, [{"expression": "sub(f, y)", "fitness": 0.2}])
    return experiment, LearnedLoss.objects.get(experiment=experiment)


def test_meta_test_seeds_and_results_are_stored_and_sent(make_experiment):
    experiment, best = meta_testing(make_experiment)
    told = watch_group(experiment.pk)
    services.count_meta_test_seed(experiment=experiment, seeds=2)
    services.count_meta_test_seed(experiment=experiment, seeds=2)
    services.finish_meta_test(experiment=experiment, learned_loss=best, record={"wins": 2})
    progress, _, finished = told()
    assert (progress["type"], progress["seeds_done"], progress["seeds"]) == ("meta_test_progress", 1, 2)
    assert (finished["type"], finished["learned_loss"], finished["meta_test"]) == ("meta_test_finished", best.pk,
                                                                                  {"wins": 2})
    experiment.refresh_from_db()
    assert (experiment.meta_test_status, experiment.meta_test_seeds_done) == (MetaTestStatus.SUCCEEDED, 2)
    assert LearnedLoss.objects.get(pk=best.pk).meta_test == {"wins": 2}


def test_a_failed_meta_test_is_recorded_and_announced(make_experiment):
    experiment, _ = meta_testing(make_experiment)
    told = watch_group(experiment.pk)
    services.fail_meta_test(experiment=experiment, error="RuntimeError: out of memory")
    [message] = told()
    assert message["experiment"]["meta_test_status"] == "failed" and experiment.status == Status.SUCCEEDED
    assert message["experiment"]["meta_test_error"] == "RuntimeError: out of memory"


# ----------------------------------------------------------------------------- at stack start


def test_requeue_unfinished_sends_queued_and_interrupted_searches_to_the_broker(make_experiment, embedded_redis):
    queued, running, finished = make_experiment(), make_experiment(), make_experiment()
    meta_testing_one, done, stopping = make_experiment(), make_experiment(), make_experiment()
    running.claim_for_worker("lost with the old stack")
    stopping.claim_for_worker("lost with the old stack")
    stopping.request_cancel()
    finished.request_cancel()
    Experiment.objects.filter(pk=meta_testing_one.pk).update(status=Status.SUCCEEDED,
                                                             meta_test_status=MetaTestStatus.RUNNING)
    Experiment.objects.filter(pk=done.pk).update(status=Status.SUCCEEDED, meta_test_status=MetaTestStatus.SUCCEEDED)
    told = watch_group(stopping.pk)
    pks = services.requeue_unfinished(broker_url=embedded_redis.url)
    assert pks == [queued.pk, running.pk, meta_testing_one.pk]
    assert redis.Redis.from_url(embedded_redis.url).llen("celery") == 3  # Celery's default queue
    assert Experiment.objects.get(pk=running.pk).status == Status.QUEUED
    assert Experiment.objects.get(pk=stopping.pk).status == Status.CANCELLED and statuses(told()) == ["cancelled"]
