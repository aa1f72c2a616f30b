"""Transfers in the web app: the worker runs one with progress on its row, a redelivered task changes
nothing, a failure is recorded; the page form asks for one; the leaderboard ranks by a target task."""

import pytest
from django.urls import reverse

from lfl_web.experiments import broker, services
from lfl_web.experiments.models import LearnedLoss, Status, TransferRun, TransferStatus
from lfl_web.experiments.tasks import run_transfer
from lfl_web.experiments.transfers.request_checks import InvalidTransfer

from ...conftest import tiny_config

pytestmark = pytest.mark.django_db

CROSS_ENTROPY = "mul(-1, mul(y, log(f)))"


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def make_loss(make_experiment, *, name="search", expression=CROSS_ENTROPY, meta_test=None, model="logistic"):
    experiment = make_experiment(name=name, status=Status.SUCCEEDED, baseline_loss="cross_entropy",
                                 baseline_fitness=0.2, config=tiny_config(task={"max_train": 200, "model": model}))
    return LearnedLoss.objects.create(experiment=experiment, rank=1, expression=expression, complexity=6,
                                      validation_fitness=0.1, baseline_fitness=0.2, dataset="digits", model=model,
                                      metric="error rate", meta_test=meta_test)


def queued(loss, **fields):
    values = {"dataset": "digits", "model": "mlp", "seeds": 2, "steps": 5, **fields}
    return TransferRun.objects.create(learned_loss=loss, **values)


def test_the_worker_counts_each_seed_stores_the_record_and_a_redelivery_changes_nothing(make_experiment, monkeypatch):
    run = queued(make_loss(make_experiment))
    progress = []
    count_seed = TransferRun.count_seed

    def counting(self):
        count_seed(self)
        progress.append(TransferRun.objects.get(pk=self.pk).seeds_done)

    monkeypatch.setattr(TransferRun, "count_seed", counting)
    assert run_transfer(run.pk) == TransferStatus.SUCCEEDED
    assert progress == [1, 2]
    run.refresh_from_db()
    assert run.record["target"] == {"dataset": "digits", "model": "mlp"} and len(run.record["seeds"]) == 2
    assert run.record["learned"] == run.record["baseline"] and run.improvement == 0.0  # cross-entropy itself
    before = (run.record, run.finished_at, run.seeds_done)
    assert run_transfer(run.pk) == TransferStatus.SUCCEEDED
    run.refresh_from_db()
    assert (run.record, run.finished_at, run.seeds_done) == before and progress == [1, 2]


def test_a_run_that_fails_keeps_the_error_and_a_missing_one_is_skipped(make_experiment, monkeypatch):
    run = queued(make_loss(make_experiment))

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("search_engine.scoring.transfer.transfer", broken)
    assert run_transfer(run.pk) == TransferStatus.FAILED
    run.refresh_from_db()
    assert run.error == "RuntimeError: out of memory" and run.record is None
    assert run_transfer(987654) == "missing"


def test_a_run_another_task_holds_is_left_to_it(make_experiment):
    run = queued(make_loss(make_experiment), status=TransferStatus.RUNNING, celery_task_id="the-other-task")
    assert run_transfer(run.pk) == TransferStatus.RUNNING
    run.refresh_from_db()
    assert run.record is None and run.seeds_done == 0


def test_the_page_form_asks_for_a_transfer_and_the_page_shows_it(signed_in, make_experiment, sent_transfers,
                                                                 django_capture_on_commit_callbacks):
    loss = make_loss(make_experiment)
    page = signed_in.get(loss.experiment.get_absolute_url())
    assert b"try on another task" in page.content and b"data-transfer-form" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("loss_transfers", args=[loss.pk]),
                                  {"dataset": "digits", "model": "mlp", "next": reverse("leaderboard")})
    assert response.status_code == 302 and response["Location"] == reverse("leaderboard")
    run = TransferRun.objects.get()
    assert sent_transfers == [run.pk] and run.requested_by == loss.experiment.owner
    listed = signed_in.get(reverse("loss_transfers", args=[loss.pk]))
    assert b"digits / mlp" in listed.content and b"queued" in listed.content and b"data-pending" in listed.content
    TransferRun.objects.filter(pk=run.pk).update(status=TransferStatus.RUNNING, seeds_done=1)
    assert b"running, 1/" in signed_in.get(reverse("loss_transfers", args=[loss.pk])).content


def test_a_bad_form_says_what_is_wrong_and_stores_nothing(signed_in, make_experiment, sent_transfers,
                                                          django_capture_on_commit_callbacks):
    loss = make_loss(make_experiment)
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("loss_transfers", args=[loss.pk]),
                                  {"dataset": "diabetes", "model": "mlp", "next": "https://evil.example/"},
                                  follow=True)
    assert response.redirect_chain[0][0] == loss.experiment.get_absolute_url()  # never off-site
    assert "dataset: &#x27;diabetes&#x27; is a regression dataset" in response.content.decode()
    assert not TransferRun.objects.exists() and sent_transfers == []


def test_a_loss_the_user_may_not_see_has_no_transfers_page(client, other_user, make_experiment):
    loss = make_loss(make_experiment)
    loss.experiment.private = True
    loss.experiment.save()
    client.force_login(other_user)
    assert client.get(reverse("loss_transfers", args=[loss.pk])).status_code == 404
    assert client.post(reverse("loss_transfers", args=[loss.pk]), {"dataset": "digits", "model": "mlp"}
                       ).status_code == 404


def test_the_leaderboard_ranks_by_the_result_on_the_chosen_task_wherever_the_loss_was_learned(
        signed_in, make_experiment):
    def succeeded(loss, learned, baseline=0.2):
        record = {"learned_mean": learned, "baseline_mean": baseline, "learned_std": 0.0, "baseline_std": 0.0,
                  "wins": 1, "p_value": None}
        return queued(loss, status=TransferStatus.SUCCEEDED, record=record, improvement=(baseline - learned) / baseline)

    small_gain = make_loss(make_experiment, name="small gain")
    succeeded(small_gain, 0.18)
    big_gain = make_loss(make_experiment, name="big gain", expression="square(sub(y, f))")
    succeeded(big_gain, 0.10)
    learned_there = make_loss(make_experiment, name="learned there", model="mlp",
                              meta_test={"learned_mean": 0.15, "baseline_mean": 0.2})
    make_loss(make_experiment, name="untested")
    elsewhere = make_loss(make_experiment, name="elsewhere")
    queued(elsewhere, model="lenet5", status=TransferStatus.SUCCEEDED, record={"learned_mean": 0.0}, improvement=1.0)

    rows = LearnedLoss.objects.ranked_by("meta_test").tested_on("digits", "mlp")
    assert [r.pk for r in rows] == [big_gain.pk, learned_there.pk, small_gain.pk]
    assert [round(r.tested_improvement, 3) for r in rows] == [0.5, 0.25, 0.1]
    assert rows[0].tested_learned == pytest.approx(0.10) and rows[0].tested_baseline == pytest.approx(0.2)

    page = signed_in.get(reverse("leaderboard"), {"tested_dataset": "digits", "tested_model": "mlp"}).content.decode()
    assert "On digits / mlp" in page and ">untested</a>" not in page and ">elsewhere</a>" not in page
    assert page.index(">big gain</a>") < page.index(">learned there</a>") < page.index(">small gain</a>")
    assert "+50.0%" in page
    form = page[page.index("data-transfer-form"):]
    assert form.index("csrfmiddlewaretoken") < form.index("</form>")  # rendered for this request: its token
    half = signed_in.get(reverse("leaderboard"), {"tested_dataset": "digits"}, follow=True).content.decode()
    assert "needs a known dataset and a known model" in half and ">untested</a>" in half


def test_a_restarted_stack_sends_unfinished_transfers_again_under_their_own_task_ids(make_experiment, monkeypatch):
    loss = make_loss(make_experiment)
    waiting = queued(loss, status=TransferStatus.QUEUED, celery_task_id="task-a")
    lost = queued(loss, model="lenet5", dataset="digits28", status=TransferStatus.RUNNING, celery_task_id="task-b")
    queued(loss, model="logistic", status=TransferStatus.SUCCEEDED, celery_task_id="task-c")
    got = []
    monkeypatch.setattr(broker.celery_app, "send_task",
                        lambda name, args=None, task_id=None, **options: got.append((name, args[0], task_id)))
    assert services.resend_unfinished_transfers(broker_url="memory://", running_too=False) == [waiting.pk]
    got.clear()
    assert services.resend_unfinished_transfers(broker_url="memory://", running_too=True) == [waiting.pk, lost.pk]
    assert got == [(broker.RUN_TRANSFER, waiting.pk, "task-a"), (broker.RUN_TRANSFER, lost.pk, "task-b")]
    lost.refresh_from_db()
    assert lost.claim("task-b") and lost.status == TransferStatus.RUNNING  # the redelivered task takes it over


def test_a_transfer_leads_with_its_verdict_at_tuned_rates_and_counts_the_tuning_against_the_ceiling(
        signed_in, make_experiment, settings, sent_transfers, django_capture_on_commit_callbacks):
    loss = make_loss(make_experiment)
    fixed = {"metric": "error rate", "seeds": [1, 2], "learned_mean": 0.1, "baseline_mean": 0.2, "learned_std": 0.0,
             "baseline_std": 0.0, "wins": 2, "p_value": 0.001, "relative_improvement": 0.5,
             "baseline_loss": "cross_entropy"}
    tuned = {**fixed, "learned_mean": 0.19, "p_value": 0.4, "learned_lr": 0.1, "baseline_lr": 0.316, "wins": 1,
             "relative_improvement": 0.05}
    queued(loss, status=TransferStatus.SUCCEEDED, record={**fixed, "tuned_lr": tuned}, improvement=0.05)
    listed = signed_in.get(reverse("loss_transfers", args=[loss.pk])).content.decode().replace("&#x27;", "'")
    said = listed.index("no better than cross-entropy at its best learning rate (p = 0.4)")
    at_tuned = listed.index("each at its own best learning rate: +5.0%")
    paper = listed.index("at the search's learning rate (the paper's protocol): learned 0.1000 vs baseline 0.2000 (+50.0%")
    assert said < at_tuned < paper

    # 2 seeds x 5 steps x 2 losses, and the tuning: 2 x (at most 11 rates x 2 tuning seeds + 2 seeds) x 5
    settings.LFL_MAX_TRAINING_STEPS = 20 + 240 - 1
    with pytest.raises(InvalidTransfer) as caught:
        services.create_transfer(user=loss.experiment.owner, learned_loss=loss, dataset="digits", model="logistic",
                                  seeds=2, steps=5)
    assert caught.value.errors["steps"].startswith("asks for 260 training steps")
    settings.LFL_MAX_TRAINING_STEPS = 260
    with django_capture_on_commit_callbacks(execute=True):
        run = services.create_transfer(user=loss.experiment.owner, learned_loss=loss, dataset="digits",
                                        model="logistic", seeds=2, steps=5)
    assert sent_transfers == [run.pk]
