"""The JSON API: token authentication, experiments (create, list, status, cancel), the leaderboard
and learned-loss downloads, with JSON errors that name what is wrong and store nothing."""

import hashlib
import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from lfl_web.api.http import MAX_BODY_BYTES
from lfl_web.api.models import ApiToken
from lfl_web.experiments.models import Experiment, LearnedLoss, Status
from search_engine.catalog import EXPORT_FORMATS
from search_engine.config import ExperimentConfig, load_config
from search_engine.limits import work_estimate

from ..conftest import tiny_config

pytestmark = pytest.mark.django_db

CROSS_ENTROPY = "mul(-1, mul(y, log(f)))"


def auth(key):
    return {"HTTP_AUTHORIZATION": f"Token {key}"}


def post_json(client, url, key, data):
    body = data if isinstance(data, (bytes, str)) else json.dumps(data)
    return client.post(url, body, content_type="application/json", **auth(key))


def finished_with_loss(make_experiment, owner=None, *, dataset="digits", fitness=0.1, baseline=0.2,
                       metric="error rate", private=False, status=Status.SUCCEEDED, expression=CROSS_ENTROPY):
    experiment = make_experiment(owner=owner, name=f"{dataset} search", private=private, status=status,
                                 baseline_loss="cross_entropy" if metric == "error rate" else "squared_error",
                                 baseline_fitness=baseline)
    loss = LearnedLoss.objects.create(
        experiment=experiment, rank=1, expression=expression, latex="L", weights=None, complexity=6,
        validation_fitness=fitness, baseline_fitness=baseline, dataset=dataset, model="logistic", metric=metric,
    )
    return experiment, loss


# ----------------------------------------------------------------------------- authentication

ENDPOINTS = [
    ("get", "/api/experiments/"),
    ("post", "/api/experiments/"),
    ("get", "/api/experiments/1/"),
    ("post", "/api/experiments/1/cancel/"),
    ("get", "/api/leaderboard/"),
    ("get", "/api/losses/1/download/json/"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
@pytest.mark.parametrize("header", [None, "Token 0123456789abcdef0123456789abcdef01234567", "Token nope", "Bearer x"])
def test_every_endpoint_needs_a_valid_token(client, key, method, url, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = getattr(client, method)(url, **extra)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert "token" in response.json()["error"].lower()


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_a_signed_in_session_is_not_accepted_without_a_token(client, user, method, url):
    client.force_login(user)
    assert getattr(client, method)(url).status_code == 401


def test_only_the_hash_of_a_token_is_stored_and_its_use_is_noted(client, user):
    token, key = ApiToken.objects.issue(user, "laptop")
    assert len(key) == 40 and int(key, 16) >= 0
    stored = ApiToken.objects.filter(pk=token.pk).values().get()
    assert stored["key_hash"] == hashlib.sha256(key.encode()).hexdigest() and stored["prefix"] == key[:8]
    assert key not in json.dumps(stored, default=str) and stored["last_used"] is None
    assert client.get("/api/experiments/", **auth(key)).status_code == 200
    assert ApiToken.objects.get(pk=token.pk).last_used is not None


def test_revoked_tokens_and_inactive_users_are_refused(client, user, key):
    assert client.get("/api/experiments/", **auth(key)).status_code == 200
    user.is_active = False
    user.save()
    assert client.get("/api/experiments/", **auth(key)).status_code == 401
    user.is_active = True
    user.save()
    ApiToken.objects.all().delete()
    assert client.get("/api/experiments/", **auth(key)).status_code == 401


def test_create_api_token_command_prints_a_working_key_once(client, user):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", "ada", "--name", "ci", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert len(key) == 40 and key not in err.getvalue()
    assert ApiToken.objects.get().name == "ci"
    assert client.get("/api/experiments/", **auth(key)).status_code == 200
    with pytest.raises(CommandError, match="no user named 'nobody'") as refused:
        call_command("create_api_token", "nobody", stdout=out, stderr=err)
    # The message says how to add the user, both ways, with the name filled in.
    assert reverse("admin:auth_user_add") in str(refused.value)
    assert "manage.py createsuperuser --username nobody" in str(refused.value)
    assert ApiToken.objects.count() == 1


def test_admin_creates_a_token_and_shows_its_key_once(client, django_user_model, user):
    root = django_user_model.objects.create_superuser("root", password="a-long-test-password")
    client.force_login(root)
    response = client.post(reverse("admin:api_apitoken_add"), {"user": user.pk, "name": "notebook"}, follow=True)
    token = ApiToken.objects.get()
    shown = [str(m) for m in response.context["messages"] if token.prefix in str(m)]
    key = shown[0].split("key is ")[1].split(" ")[0]
    assert ApiToken.objects.authenticate(key) == token and token.user == user


# ----------------------------------------------------------------------------- HTTP conventions


def test_wrong_method_is_a_json_405_naming_the_allowed_ones(client, key):
    response = client.delete("/api/experiments/", **auth(key))
    assert response.status_code == 405 and response["Allow"] == "GET, POST"
    assert "DELETE" in response.json()["error"]
    assert client.get("/api/experiments/1/cancel/", **auth(key)).status_code == 405


def test_unknown_paths_are_a_json_404_with_a_hint_for_a_missing_slash(client, key):
    response = client.get("/api/nothing/here/", **auth(key))
    assert response.status_code == 404 and "no API endpoint" in response.json()["error"]
    assert "did you mean /api/leaderboard/" in client.post("/api/leaderboard").json()["error"]


# ----------------------------------------------------------------------------- creating experiments


def test_create_stores_one_experiment_and_sends_it_to_a_worker(client, user, key, sent,
                                                               django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(client, "/api/experiments/", key,
                             {"name": "tiny", "description": "via API", "private": True, "config": tiny_config()})
    assert response.status_code == 201, response.content
    experiment = Experiment.objects.get()
    assert (experiment.owner, experiment.name, experiment.private) == (user, "tiny", True)
    assert sent == [experiment.pk]
    body = response.json()
    assert body["id"] == experiment.pk and body["status"] == "queued" and body["total_generations"] == 2
    assert body["config"]["search"]["crossover_rate"] == 0.7  # defaults filled in
    assert body["urls"]["self"] == f"http://testserver/api/experiments/{experiment.pk}/"
    assert response["Location"] == body["urls"]["self"]
    assert body["urls"]["page"] == f"http://testserver/experiments/{experiment.pk}/"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b"{not json", None, "malformed JSON body"),
        (b"", None, "the request body is empty"),
        (b"[1, 2]", None, "must be a JSON object, got an array"),
        (b'{"name": "x", "config": {"training": {"lr": NaN}}}', None, "NaN is not valid JSON"),
        ({"name": "x", "config": tiny_config(search={"crossover_rate": 1.5})}, "search.crossover_rate",
         "must be in [0, 1], got 1.5"),
        ({"name": "x", "config": tiny_config(search={"mutation_rate": -0.1})}, "search.mutation_rate",
         "must be in [0, 1]"),
        ({"name": "x", "config": tiny_config(task={"dataset": "nope"})}, "task.dataset", "unknown dataset 'nope'"),
        ({"name": "x", "config": tiny_config(training={"lr": 1e308})}, "training.lr",
         "must be positive and at most 100, got 1e+308"),
        (b'{"name": "x", "config": {"training": {"lr": 1e400}}}', "training.lr", "must be a finite number"),
        ({"name": "x", "config": tiny_config(local_search={"meta_lr": 1e308})}, "local_search.meta_lr",
         "must be positive and at most 10, got 1e+308"),
        ({"name": "x", "config": tiny_config(training={"momentum": 1.0})}, "training.momentum",
         "must be in [0, 1), got 1.0"),
        ({"name": "x", "config": tiny_config(training={"lr": "abc"})}, "training.lr", "must be a number, got 'abc'"),
        ({"name": "x", "config": tiny_config(training={"lr": ""})}, "training.lr", "must be a number, got ''"),
        ({"name": "x", "config": tiny_config(search={"generations": "abc"})}, "search.generations",
         "must be an integer, got 'abc'"),
        ({"name": "x", "config": tiny_config(search={"crossover_rate": 0.8, "mutation_rate": 0.5})},
         "search.mutation_rate", "crossover_rate + mutation_rate must be at most 1"),
        ({"name": "x", "config": tiny_config(task={"datset": "digits"})}, "task.datset", "did you mean 'dataset'"),
        ({"name": "x", "config": tiny_config(search={"population_size": 10**9, "generations": 10**9})},
         "search.generations", "must be at most 10000, got 1000000000"),
        ({"config": tiny_config()}, "name", "this field is required"),
        ({"name": "", "config": tiny_config()}, "name", "cannot be blank"),
        ({"name": "x" * 201, "config": tiny_config()}, "name", "at most 200 characters"),
        ({"name": "x"}, "config", "this field is required"),
        ({"name": "x", "config": "configs/quick.json"}, "config", "must be an object, got a string"),
        ({"name": "x", "private": "yes", "config": tiny_config()}, "private", "must be a boolean, got a string"),
        ({"name": "x", "colour": "red", "config": tiny_config()}, "colour", "unknown field"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem_and_stores_nothing(client, key, sent, body, field, message,
                                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(client, "/api/experiments/", key, body)
    assert response.status_code == 400
    answer = response.json()
    assert message in (answer["error"] if field is None else answer["errors"][field])
    assert not Experiment.objects.exists() and sent == []


def test_an_empty_config_is_every_default_and_the_answer_carries_the_work_estimate(client, key, sent):
    response = post_json(client, "/api/experiments/", key, {"name": "defaults", "config": {}})
    assert response.status_code == 201, response.content
    assert Experiment.objects.get().config == ExperimentConfig().to_dict()
    assert response.json()["work_estimate"] == work_estimate(ExperimentConfig())


def test_data_too_small_to_split_is_a_400_at_the_data_file(client, key, sent, tmp_path):
    (tmp_path / "one.csv").write_text("a,b,label\n1,2,yes\n")
    config = tiny_config(task={"dataset": "csv", "model": "mlp", "data_file": str(tmp_path / "one.csv"),
                               "kind": "classification"})
    response = post_json(client, "/api/experiments/", key, {"name": "x", "config": config})
    assert response.status_code == 400 and "has 1 sample(s)" in response.json()["errors"]["task.data_file"]
    assert not Experiment.objects.exists()


def test_over_the_ceiling_is_a_400_naming_estimate_and_ceiling(client, key, sent, settings):
    settings.LFL_MAX_TRAINING_STEPS = 100  # tiny_config asks for hundreds of steps (its meta-test alone 600)
    total = work_estimate(load_config(tiny_config(), check_data=False))["total_steps"]
    response = post_json(client, "/api/experiments/", key, {"name": "x", "config": tiny_config()})
    assert response.status_code == 400
    assert f"asks for {total:,} training steps" in response.json()["errors"]["config"]
    assert "more than the 100 this server allows" in response.json()["errors"]["config"]
    assert not Experiment.objects.exists()


def test_one_more_than_a_user_may_queue_is_a_429_and_a_finished_one_frees_a_place(client, key, sent, settings,
                                                                                 make_experiment):
    settings.LFL_MAX_QUEUED_PER_USER = 1
    queued = make_experiment()
    response = post_json(client, "/api/experiments/", key, {"name": "x", "config": tiny_config()})
    assert response.status_code == 429 and "LFL_MAX_QUEUED_PER_USER = 1" in response.json()["error"]
    assert Experiment.objects.count() == 1
    Experiment.objects.filter(pk=queued.pk).update(status=Status.CANCELLED)
    assert post_json(client, "/api/experiments/", key, {"name": "x", "config": tiny_config()}).status_code == 201


def test_an_oversized_body_is_refused_with_413(client, key, sent):
    body = json.dumps({"name": "big", "description": "x" * MAX_BODY_BYTES, "config": tiny_config()})
    response = post_json(client, "/api/experiments/", key, body)
    assert response.status_code == 413 and "larger than" in response.json()["error"]
    assert not Experiment.objects.exists()


# ----------------------------------------------------------------------------- listing, status, cancel


def test_list_shows_what_the_user_may_see_and_scope_mine_only_their_own(client, key, other_user, make_experiment):
    mine = make_experiment(name="mine", private=True)
    shared = make_experiment(owner=other_user, name="shared")
    make_experiment(owner=other_user, name="secret", private=True)
    everything = client.get("/api/experiments/", **auth(key)).json()
    assert [e["name"] for e in everything["experiments"]] == ["shared", "mine"] and everything["count"] == 2
    assert everything["experiments"][0]["owner"] == "grace"
    assert everything["experiments"][0]["urls"]["cancel"].endswith(f"/api/experiments/{shared.pk}/cancel/")
    own = client.get("/api/experiments/?scope=mine", **auth(key)).json()
    assert [e["id"] for e in own["experiments"]] == [mine.pk]
    assert len(client.get("/api/experiments/?limit=1", **auth(key)).json()["experiments"]) == 1
    bad = client.get("/api/experiments/?scope=theirs", **auth(key))
    assert bad.status_code == 400 and "must be one of all, mine" in bad.json()["errors"]["scope"]
    assert client.get("/api/experiments/?limit=0", **auth(key)).json()["errors"]["limit"]


def test_status_returns_the_current_state_and_hides_private_experiments(client, key, other_user, make_experiment):
    experiment, loss = finished_with_loss(make_experiment)
    body = client.get(f"/api/experiments/{experiment.pk}/", **auth(key)).json()
    assert body["experiment"]["status"] == "succeeded" and body["experiment"]["id"] == experiment.pk
    assert body["generations"] == [] and body["candidates"] == []
    assert body["learned_losses"][0]["id"] == loss.pk
    assert body["learned_losses"][0]["downloads"]["torch"].endswith(f"/api/losses/{loss.pk}/download/torch/")
    secret = make_experiment(owner=other_user, private=True)
    for pk in (secret.pk, 10**6):
        response = client.get(f"/api/experiments/{pk}/", **auth(key))
        assert response.status_code == 404 and "no experiment" in response.json()["error"]


def test_a_learned_loss_leads_with_its_meta_tests_verdict_and_comparison_at_tuned_rates(client, key, make_experiment):
    experiment, loss = finished_with_loss(make_experiment)
    fixed = {"metric": "error rate", "seeds": [1000, 1001], "learned": [0.1, 0.1], "baseline": [0.2, 0.2],
             "learned_mean": 0.1, "learned_std": 0.0, "baseline_mean": 0.2, "baseline_std": 0.0, "wins": 2,
             "t_statistic": None, "p_value": None}
    tuned = {**fixed, "learned": [0.15, 0.14], "learned_mean": 0.145, "learned_std": 0.007, "p_value": 0.03,
             "t_statistic": -21.0, "learned_lr": 0.0316, "baseline_lr": 1.0, "tried": {}}
    LearnedLoss.objects.filter(pk=loss.pk).update(meta_test={**fixed, "tuned_lr": tuned, "rescales_baseline": None})
    entry = client.get(f"/api/experiments/{experiment.pk}/", **auth(key)).json()["learned_losses"][0]
    assert list(entry)[:4] == ["id", "verdict", "tuned_comparison", "fixed_rate_comparison"]
    assert entry["verdict"] == {
        "code": "better", "phrase": "better than cross-entropy at its best learning rate (p = 0.03)",
        "sentence": "The learned loss is better than cross-entropy at its best learning rate (p = 0.03).",
        "p_value": 0.03, "rescale": None}
    assert entry["tuned_comparison"]["relative_improvement"] == pytest.approx(0.275)
    assert (entry["tuned_comparison"]["learned_lr"], entry["tuned_comparison"]["seeds"]) == (0.0316, 2)
    assert entry["fixed_rate_comparison"]["relative_improvement"] == pytest.approx(0.5)
    assert "learned_lr" not in entry["fixed_rate_comparison"]
    # the fields that were there before stay
    assert entry["meta_test"]["tuned_lr"]["learned_mean"] == 0.145 and entry["relative_improvement"] == 0.5


def test_only_the_owner_or_staff_may_cancel(client, key, other_key, other_user, make_experiment, django_user_model):
    queued = make_experiment()
    response = client.post(f"/api/experiments/{queued.pk}/cancel/", **auth(other_key))
    assert response.status_code == 403 and "owner" in response.json()["error"]
    assert not Experiment.objects.get(pk=queued.pk).cancel_requested
    response = client.post(f"/api/experiments/{queued.pk}/cancel/", **auth(key))
    assert response.status_code == 200
    assert response.json()["cancel_requested"] and response.json()["status"] == "cancelled"
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    theirs = make_experiment(owner=other_user, private=True)
    staff_key = ApiToken.objects.issue(staff)[1]
    assert client.post(f"/api/experiments/{theirs.pk}/cancel/", **auth(staff_key)).status_code == 200
    assert client.post(f"/api/experiments/{theirs.pk}/cancel/", **auth(key)).status_code == 404  # invisible


def test_cancelling_a_running_search_raises_its_flag_and_a_finished_one_is_409(client, key, make_experiment):
    running = make_experiment()
    running.claim_for_worker("task-1")
    body = client.post(f"/api/experiments/{running.pk}/cancel/", **auth(key)).json()
    assert body["status"] == "running" and body["cancel_requested"]
    assert client.post(f"/api/experiments/{running.pk}/cancel/", **auth(key)).status_code == 200  # still stopping
    done, _ = finished_with_loss(make_experiment)
    response = client.post(f"/api/experiments/{done.pk}/cancel/", **auth(key))
    assert response.status_code == 409 and "already finished (succeeded)" in response.json()["error"]
    assert not Experiment.objects.get(pk=done.pk).cancel_requested


# ----------------------------------------------------------------------------- leaderboard, downloads


def test_leaderboard_lists_visible_finished_losses_with_filters_and_sorts(client, key, user, other_user,
                                                                         make_experiment):
    _, small_gain = finished_with_loss(make_experiment, dataset="digits", fitness=0.19, baseline=0.2)
    _, big_gain = finished_with_loss(make_experiment, owner=other_user, dataset="mnist", fitness=0.05, baseline=0.2)
    _, regression = finished_with_loss(make_experiment, dataset="diabetes", fitness=0.9, baseline=1.0, metric="MSE")
    finished_with_loss(make_experiment, owner=other_user, dataset="digits", private=True)  # invisible to ada
    finished_with_loss(make_experiment, dataset="digits", status=Status.RUNNING)  # not finished
    LearnedLoss.objects.create(experiment=small_gain.experiment, rank=2, expression="square(sub(y, f))",
                               validation_fitness=0.3, baseline_fitness=0.2, dataset="digits", model="logistic",
                               metric="error rate")
    board = client.get("/api/leaderboard/", **auth(key)).json()
    assert board["sort"] == "meta_test"  # none is meta-tested: all by validation fitness
    assert [e["id"] for e in board["losses"]] == [big_gain.pk, small_gain.pk, regression.pk]  # best first
    entry = next(e for e in board["losses"] if e["id"] == big_gain.pk)
    assert entry["author"] == "grace" and entry["experiment_id"] == big_gain.experiment_id
    assert entry["improvement"] == pytest.approx(0.15) and entry["relative_improvement"] == pytest.approx(0.75)
    assert set(entry["downloads"]) == {"torch", "torchscript", "latex", "json"} and entry["created_at"]
    digits = client.get("/api/leaderboard/?dataset=digits", **auth(key)).json()["losses"]
    assert [e["id"] for e in digits] == [small_gain.pk]
    every_rank = client.get("/api/leaderboard/?dataset=digits&ranks=all", **auth(key)).json()["losses"]
    assert [e["rank"] for e in every_rank] == [1, 2]
    by_gain = client.get("/api/leaderboard/?sort=improvement", **auth(key)).json()["losses"]
    assert [e["id"] for e in by_gain] == [big_gain.pk, regression.pk, small_gain.pk]
    mse = client.get("/api/leaderboard/?metric=MSE&model=logistic", **auth(key)).json()["losses"]
    assert [e["id"] for e in mse] == [regression.pk]
    bad = client.get("/api/leaderboard/?sort=best", **auth(key))
    assert bad.status_code == 400 and "must be one of fitness, improvement, date" in bad.json()["errors"]["sort"]


def test_downloads_every_format_as_an_attachment(client, key, make_experiment):
    _, loss = finished_with_loss(make_experiment)
    files = {}
    for fmt in EXPORT_FORMATS:
        response = client.get(f"/api/losses/{loss.pk}/download/{fmt}/", **auth(key))
        assert response.status_code == 200, response.content
        assert response["Content-Disposition"].startswith("attachment; filename=")
        files[fmt] = response.content
    source = files["torch"].decode()
    compile(source, "learned_loss.py", "exec")
    assert "class LearnedLoss" in source
    assert files["torchscript"][:2] == b"PK"  # a torch.jit.save zip archive
    assert "\\begin{document}" in files["latex"].decode()
    exported = json.loads(files["json"])
    assert exported["format"] == "lfl-learned-loss" and exported["expression"] == CROSS_ENTROPY
    assert exported["baseline"] == {"loss": "cross_entropy", "fitness": 0.2}


def test_download_of_an_unknown_format_or_an_invisible_loss_is_404(client, key, other_user, make_experiment):
    _, loss = finished_with_loss(make_experiment)
    _, secret = finished_with_loss(make_experiment, owner=other_user, private=True)
    unknown = client.get(f"/api/losses/{loss.pk}/download/onnx/", **auth(key))
    assert unknown.status_code == 404 and "unknown format 'onnx'" in unknown.json()["error"]
    assert client.get(f"/api/losses/{secret.pk}/download/json/", **auth(key)).status_code == 404
    assert client.get("/api/losses/999999/download/json/", **auth(key)).status_code == 404
