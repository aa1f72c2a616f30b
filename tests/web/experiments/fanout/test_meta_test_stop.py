"""Stopping the meta-test that follows a search's success: the owner (or staff) asks through the
service, the page or the API; the worker notices within a few training steps and records it as
cancelled, the search stays succeeded and its losses downloadable; a stack restart runs it no more."""

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from lfl_web.api.models import ApiToken
from lfl_web.experiments import services
from lfl_web.experiments.fanout.best_loss_meta_test import run_pending_meta_test
from lfl_web.experiments.models import Experiment, LearnedLoss, MetaTestStatus, Status
from lfl_web.experiments.models.experiment import META_TEST_STOPPED
from lfl_web.experiments.results.downloads import export_file
from lfl_web.experiments.tasks import run_experiment
from search_engine.runtime import interrupt

from ...conftest import tiny_config, watch_group
from ..test_pages import section

pytestmark = pytest.mark.django_db

CE = "mul(-1, mul(y, log(f)))"


@pytest.fixture
def meta_testing(make_experiment):
    """A succeeded search whose best loss (cross-entropy) a worker is meta-testing."""

    def make(owner=None, **fields):
        fields = {"meta_test_status": MetaTestStatus.RUNNING, **fields}
        experiment = make_experiment(owner=owner, status=Status.SUCCEEDED, baseline_loss="cross_entropy",
                                     baseline_fitness=0.2, **fields)
        LearnedLoss.objects.replace_for(experiment, [{"expression": CE, "fitness": 0.1, "size": 6}])
        return experiment

    return make


def meta_test_statuses(messages) -> list[str]:
    return [m["experiment"]["meta_test_status"] for m in messages if m["type"] == "experiment_status"]


# ----------------------------------------------------------------------------- in the worker


def test_a_meta_test_stopped_after_its_first_seed_ends_cancelled_within_a_few_steps(make_experiment, user,
                                                                                     monkeypatch):
    experiment = make_experiment(config=tiny_config(meta_test={"seeds": 3, "steps": 40}))
    real_count, real_check = services.count_meta_test_seed, interrupt.check
    steps_after_the_request = []

    def count_then_stop(*, experiment, seeds):
        real_count(experiment=experiment, seeds=seeds)
        if experiment.meta_test_seeds_done == 1:  # the on_seed callback of the first seed
            assert services.cancel_experiment(experiment=Experiment.objects.get(pk=experiment.pk), user=user)

    def check(step):
        if Experiment.objects.filter(pk=experiment.pk, cancel_requested=True).exists():
            steps_after_the_request.append(step)
        real_check(step)

    monkeypatch.setattr(services, "count_meta_test_seed", count_then_stop)
    monkeypatch.setattr(interrupt, "check", check)
    received = watch_group(experiment.pk)
    assert run_experiment(experiment.pk) == Status.SUCCEEDED
    experiment.refresh_from_db()
    assert (experiment.status, experiment.error) == (Status.SUCCEEDED, "")
    assert (experiment.meta_test_status, experiment.meta_test_error) == (MetaTestStatus.CANCELLED, META_TEST_STOPPED)
    assert experiment.meta_test_seeds_done == 1  # seeds 2 and 3 were not trained to the end
    assert steps_after_the_request and max(steps_after_the_request) <= interrupt.CHECK_EVERY
    messages = received()
    assert "meta_test_finished" not in [m["type"] for m in messages]
    assert meta_test_statuses(messages)[-1] == "cancelled"  # the watchers are told it has ended
    best = experiment.best_learned_loss()
    assert best.meta_test is None
    contents, filename = export_file(best, "torch")  # the search's losses stay downloadable
    assert b"class LearnedLoss" in contents and filename.endswith(".py")


def test_a_meta_test_asked_to_stop_before_a_worker_took_it_never_trains(meta_testing, monkeypatch):
    import search_engine.scoring.metatest

    def trains(*args, **kwargs):
        raise AssertionError("a meta-test asked to stop was run")

    monkeypatch.setattr(search_engine.scoring.metatest, "evaluate_learned_loss", trains)
    experiment = meta_testing()
    assert experiment.request_cancel()
    run_pending_meta_test(experiment.pk)
    experiment.refresh_from_db()
    assert (experiment.status, experiment.meta_test_status) == (Status.SUCCEEDED, MetaTestStatus.CANCELLED)


def test_a_meta_test_whose_experiment_is_deleted_meanwhile_stops_quietly(meta_testing, monkeypatch):
    import search_engine.scoring.metatest

    experiment = meta_testing()

    def deleted_while_training(*args, **kwargs):
        Experiment.objects.filter(pk=experiment.pk).delete()
        interrupt.check(0)  # the next training step asks the poll: the row is gone
        raise AssertionError("the poll did not stop the meta-test")

    monkeypatch.setattr(search_engine.scoring.metatest, "evaluate_learned_loss", deleted_while_training)
    run_pending_meta_test(experiment.pk)  # no error escapes into the worker
    assert not Experiment.objects.filter(pk=experiment.pk).exists()


# ----------------------------------------------------------------------------- the service


def test_the_owner_stops_a_running_meta_test_and_the_watchers_are_told(meta_testing, user):
    experiment = meta_testing()
    told = watch_group(experiment.pk)
    assert services.cancel_experiment(experiment=experiment, user=user)
    [message] = told()
    assert message["experiment"]["cancel_requested"] and message["experiment"]["status"] == "succeeded"
    assert not services.cancel_experiment(experiment=experiment, user=user)  # asked already: no news
    assert told() == []
    services.stop_meta_test(experiment=experiment)
    assert meta_test_statuses(told()) == ["cancelled"]
    services.stop_meta_test(experiment=experiment)  # none running any more: no news
    assert told() == [] and experiment.meta_test_error == META_TEST_STOPPED


@pytest.mark.parametrize("meta_test_status", [MetaTestStatus.SUCCEEDED, MetaTestStatus.FAILED,
                                              MetaTestStatus.CANCELLED, MetaTestStatus.NOT_RUN])
def test_a_finished_experiment_whose_meta_test_is_over_has_nothing_to_stop(meta_testing, user, meta_test_status):
    experiment = meta_testing(meta_test_status=meta_test_status)
    told = watch_group(experiment.pk)
    assert not services.cancel_experiment(experiment=experiment, user=user)
    assert not Experiment.objects.get(pk=experiment.pk).cancel_requested and told() == []


def test_only_the_owner_or_staff_may_stop_a_meta_test(meta_testing, other_user, django_user_model):
    experiment = meta_testing()
    with pytest.raises(PermissionDenied):
        services.cancel_experiment(experiment=experiment, user=other_user)
    assert not Experiment.objects.get(pk=experiment.pk).cancel_requested
    staff = django_user_model.objects.create_user("root", password="a-long-test-password", is_staff=True)
    assert services.cancel_experiment(experiment=experiment, user=staff)


def test_a_restarted_stack_does_not_run_a_stopped_meta_test_again(meta_testing, sent):
    stopped, asked, running = meta_testing(), meta_testing(), meta_testing()
    stopped.request_cancel()
    stopped.mark_meta_test_stopped()
    asked.request_cancel()  # the stack stopped before the worker had noticed
    told = watch_group(asked.pk)
    assert services.requeue_unfinished(broker_url="memory://") == [running.pk]
    assert sent == [running.pk]
    asked.refresh_from_db()
    assert (asked.status, asked.meta_test_status) == (Status.SUCCEEDED, MetaTestStatus.CANCELLED)
    assert meta_test_statuses(told()) == ["cancelled"]
    assert Experiment.objects.get(pk=stopped.pk).meta_test_status == MetaTestStatus.CANCELLED


# ----------------------------------------------------------------------------- the page and the API


def test_the_page_offers_to_stop_the_meta_test_and_then_says_it_was_stopped(client, user, meta_testing):
    client.force_login(user)
    experiment = meta_testing(config=tiny_config(meta_test={"seeds": 4, "steps": 20}))
    page = client.get(experiment.get_absolute_url()).content.decode()
    assert '<form method="post" action="{}" id="cancel-form">'.format(
        reverse("experiment_cancel", args=[experiment.pk])) in page  # not hidden
    assert "<span data-meta-test-phase>Stop meta-test</span>" in page
    assert 'data-meta-testing="true"' in section(page, "meta-test-panel")

    response = client.post(reverse("experiment_cancel", args=[experiment.pk]), follow=True)
    assert response.redirect_chain[-1][0] == experiment.get_absolute_url()
    page = response.content.decode()
    assert Experiment.objects.get(pk=experiment.pk).cancel_requested
    assert "Stopping the meta-test of the best loss, as asked" in section(page, "meta-test-panel")
    assert "<span data-if-stopping>Stopping…</span>" in page

    Experiment.objects.filter(pk=experiment.pk).update(meta_test_seeds_done=1)
    services.stop_meta_test(experiment=experiment)
    page = client.get(experiment.get_absolute_url()).content.decode()
    panel = section(page, "meta-test-panel")
    assert "The meta-test was stopped (stopped by request) after 1 of 4 seeds" in panel
    assert "its losses above are complete and can be downloaded" in panel and 'data-meta-testing="false"' in panel
    assert 'id="cancel-form" hidden' in page and 'data-expects-news="false"' in page


def test_the_api_stops_a_meta_test_for_its_owner_only(client, user, other_user, meta_testing):
    key, other_key = ApiToken.objects.issue(user, "tests")[1], ApiToken.objects.issue(other_user, "tests")[1]
    experiment = meta_testing()
    url = reverse("api:experiment-cancel", args=[experiment.pk])
    assert client.post(url, HTTP_AUTHORIZATION=f"Token {other_key}").status_code == 403
    assert not Experiment.objects.get(pk=experiment.pk).cancel_requested
    body = client.post(url, HTTP_AUTHORIZATION=f"Token {key}").json()
    assert body["status"] == "succeeded" and body["cancel_requested"] and body["meta_test_status"] == "running"
    assert client.post(url, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200  # still stopping
    services.stop_meta_test(experiment=experiment)
    response = client.post(url, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 409 and "nothing to stop" in response.json()["error"]
