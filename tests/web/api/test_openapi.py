"""The API's OpenAPI document: served without a token, every URL the API answers is one of its
paths with the methods it answers there, its response fields are the keys real answers carry, and
answers and errors keep their JSON (an answer is byte for byte what payloads.py builds)."""

import re

import pytest
from django.http import JsonResponse
from django.test import Client, RequestFactory

from lfl_web.api import urls
from lfl_web.api.payloads import experiment_detail, leaderboard_entry
from lfl_web.experiments import selectors
from lfl_web.experiments.models import Candidate, Generation, LearnedLoss, TransferRun

from ..conftest import tiny_config
from .test_api import auth, finished_with_loss, post_json

pytestmark = pytest.mark.django_db

OPERATION_IDS = {"list_experiments", "create_experiment", "get_experiment", "cancel_experiment", "leaderboard",
                 "download_loss", "list_transfers", "create_transfer", "get_transfer", "list_presets"}
PROBED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: A meta-test record with a comparison at tuned rates (numbers as a worker stores them; 1 stays an integer).
FIXED = {"metric": "error rate", "seeds": [1000, 1001], "learned": [0.1, 0.1], "baseline": [0.2, 0.2],
         "learned_mean": 0.1, "learned_std": 0.0, "baseline_mean": 0.2, "baseline_std": 0.0, "wins": 2,
         "t_statistic": None, "p_value": None}
TUNED = {**FIXED, "learned_mean": 1, "p_value": 0.03, "t_statistic": -21.0, "learned_lr": 0.0316, "baseline_lr": 1.0}


@pytest.fixture
def document(client):
    response = client.get("/api/openapi.json")  # no token: the document holds no data
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    return response.json()


def resolved(document, schema):
    """`schema` with its $ref followed (and a nullable one's non-null choice)."""
    if "anyOf" in schema:
        schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
    if "$ref" in schema:
        return document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def answer_schema(document, path, method, status):
    schema = document["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    return resolved(document, schema)


def fields(document, schema, *names):
    """The documented fields of `schema`, or of the object under `names` in it (an array's items)."""
    for name in names:
        schema = resolved(document, schema["properties"][name])
        if schema.get("type") == "array":
            schema = resolved(document, schema["items"])
    return list(schema["properties"])


def test_the_document_is_openapi_3_served_without_a_token_with_the_token_scheme(client, document):
    assert document["openapi"].startswith("3.") and document["info"]["title"]
    assert document["components"]["securitySchemes"] == {"TokenAuth": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": document["components"]["securitySchemes"]["TokenAuth"]["description"]}}
    assert "Token <key>" in document["components"]["securitySchemes"]["TokenAuth"]["description"]
    operations = [op for methods in document["paths"].values() for op in methods.values()]
    ids = [op["operationId"] for op in operations]  # a generated client's method names
    assert OPERATION_IDS <= set(ids) and len(set(ids)) == len(ids) and all(re.fullmatch("[a-z_]+", i) for i in ids)
    assert all(op["security"] == [{"TokenAuth": []}] and "401" in op["responses"] for op in operations)
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and b"/api/openapi.json" in docs.content
    refused = client.post("/api/openapi.json")
    assert refused.status_code == 405 and refused["Allow"] == "GET" and "POST" in refused.json()["error"]


def test_every_url_the_api_answers_is_a_path_of_the_document_with_the_methods_it_answers(client, key, document):
    answered = {}
    for pattern in urls.urlpatterns:
        route = str(pattern.pattern)
        if not pattern.name or pattern.name.startswith(("openapi-", "api-root")):
            continue  # the document itself, its docs page, and the JSON 404 for /api/
        url = "/api/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: {"pk": "1", "fmt": "json"}[m[1]], route)
        methods = {m.lower() for m in PROBED_METHODS
                   if client.generic(m, url, **auth(key)).status_code != 405}
        answered["/api/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)] = methods
    assert answered and answered == {path: set(methods) for path, methods in document["paths"].items()}


def test_documented_fields_of_experiments_are_the_keys_of_real_answers(client, key, sent, document, make_experiment):
    created = post_json(client, "/api/experiments/", key, {"name": "tiny", "config": tiny_config()})
    assert created.status_code == 201, created.content
    assert list(created.json()) == fields(document, answer_schema(document, "/api/experiments/", "post", 201))
    assert list(created.json()["work_estimate"]) == fields(
        document, answer_schema(document, "/api/experiments/", "post", 201), "work_estimate")

    listed = client.get("/api/experiments/", **auth(key)).json()
    schema = answer_schema(document, "/api/experiments/", "get", 200)
    assert list(listed) == fields(document, schema)
    assert list(listed["experiments"][0]) == fields(document, schema, "experiments")
    assert list(listed["experiments"][0]["urls"]) == fields(document, schema, "experiments", "urls")

    experiment, loss = finished_with_loss(make_experiment)
    LearnedLoss.objects.filter(pk=loss.pk).update(meta_test={**FIXED, "tuned_lr": TUNED})
    Generation.objects.create(experiment=experiment, index=0, best_fitness=0.1, hall_of_fame=[{"expression": "f"}])
    Candidate.objects.create(experiment=experiment, generation=0, index=0, expression="f", canonical_key="f")
    detail = client.get(f"/api/experiments/{experiment.pk}/", **auth(key)).json()
    schema = answer_schema(document, "/api/experiments/{pk}/", "get", 200)
    assert list(detail) == fields(document, schema)
    for part in ("experiment", "generations", "candidates", "learned_losses"):
        found = detail[part][0] if isinstance(detail[part], list) else detail[part]
        assert list(found) == fields(document, schema, part), part
    entry = detail["learned_losses"][0]
    assert list(entry["verdict"]) == fields(document, schema, "learned_losses", "verdict")
    comparison = fields(document, schema, "learned_losses", "tuned_comparison")
    assert list(entry["tuned_comparison"]) == comparison
    # the learning rates picked are only in a comparison at tuned rates
    assert list(entry["fixed_rate_comparison"]) == [f for f in comparison if f not in ("learned_lr", "baseline_lr")]
    assert sorted(entry["downloads"]) == sorted(fields(document, schema, "learned_losses", "downloads"))

    cancelled = client.post(f"/api/experiments/{created.json()['id']}/cancel/", **auth(key)).json()
    assert list(cancelled) == fields(document, answer_schema(document, "/api/experiments/{pk}/cancel/", "post", 200))


def test_documented_fields_of_the_leaderboard_and_transfers_are_the_keys_of_real_answers(client, key, document,
                                                                                           make_experiment):
    _, loss = finished_with_loss(make_experiment)
    board = client.get("/api/leaderboard/", **auth(key)).json()
    schema = answer_schema(document, "/api/leaderboard/", "get", 200)
    assert list(board) == fields(document, schema)
    assert list(board["losses"][0]) == fields(document, schema, "losses")
    assert board["losses"][0]["tuned_comparison"] is None  # not meta-tested

    run = TransferRun.objects.create(learned_loss=loss, dataset="digits", model="mlp", seeds=1, steps=5)
    listed = client.get(f"/api/losses/{loss.pk}/transfers/", **auth(key)).json()
    schema = answer_schema(document, "/api/losses/{pk}/transfers/", "get", 200)
    assert list(listed) == fields(document, schema)
    assert list(listed["transfers"][0]) == fields(document, schema, "transfers")
    followed = client.get(f"/api/transfers/{run.pk}/", **auth(key)).json()
    assert list(followed) == fields(document, answer_schema(document, "/api/transfers/{pk}/", "get", 200))


def test_presets_are_the_forms_with_their_whole_configurations(client, key, document):
    answer = client.get("/api/presets/", **auth(key))
    assert answer.status_code == 200
    presets = {p["key"]: p for p in answer.json()["presets"]}
    assert {"quick", "ml3_digits", "random_digits"} <= set(presets)
    assert presets["quick"]["label"] == "EvoMAL on digits / mlp"
    assert presets["quick"]["config"]["search"]["generations"] > 0 and "meta_test" in presets["quick"]["config"]
    schema = answer_schema(document, "/api/presets/", "get", 200)
    assert list(answer.json()["presets"][0]) == fields(document, schema, "presets")
    assert client.get("/api/presets/").status_code == 401  # a token, like every operation


def test_an_answer_is_byte_for_byte_what_payloads_builds(client, key, make_experiment):
    experiment, loss = finished_with_loss(make_experiment)
    LearnedLoss.objects.filter(pk=loss.pk).update(meta_test={**FIXED, "tuned_lr": TUNED}, weights=[1, 0.5])
    request = RequestFactory().get("/")
    response = client.get(f"/api/experiments/{experiment.pk}/", **auth(key))
    experiment.refresh_from_db()  # its configuration as the database gives it back (PostgreSQL orders JSON keys)
    assert response.content == JsonResponse(experiment_detail(request, experiment)).content
    assert response.json()["learned_losses"][0]["tuned_comparison"]["learned_mean"] == 1  # still an integer
    assert b'"learned_mean": 1,' in response.content
    rows = selectors.leaderboard(experiment.owner, sort="meta_test")
    board = client.get("/api/leaderboard/", **auth(key))
    expected = {"count": 1, "sort": "meta_test", "losses": [leaderboard_entry(request, row) for row in rows]}
    assert board.content == JsonResponse(expected).content


def test_invalid_input_is_a_400_by_field_in_the_apis_words_never_a_raw_validation_list(client, key, sent,
                                                                                      make_experiment):
    response = post_json(client, "/api/experiments/", key,
                         {"name": 5, "private": None, "config": [], "colour": "red"})
    assert response.status_code == 400
    assert response.json() == {"errors": {
        "name": "must be a string, got a number", "private": "must be a boolean, got null",
        "config": "must be an object, got an array",
        "colour": "unknown field (known: name, description, private, config)"}}
    assert post_json(client, "/api/experiments/", key, {"config": {}}).json() == {
        "errors": {"name": "this field is required"}}
    for empty in (b"", b" \n"):
        assert post_json(client, "/api/experiments/", key, empty).json() == {
            "error": "the request body is empty; send a JSON object"}

    _, loss = finished_with_loss(make_experiment)
    transfer = post_json(client, f"/api/losses/{loss.pk}/transfers/", key, {"dataset": "digits", "seeds": 2.5})
    assert transfer.json() == {"errors": {"model": "this field is required", "seeds": "must be an integer, got 2.5"}}

    board = client.get("/api/leaderboard/?limit=abc&ranks=some&method=nope", **auth(key))
    assert board.status_code == 400 and board.json() == {"errors": {
        "ranks": "must be one of best, all, got 'some'", "method": board.json()["errors"]["method"],
        "limit": "must be an integer from 1 to 1000, got 'abc'"}}
    assert board.json()["errors"]["method"].startswith("must be one of evomal, ")
    # an empty parameter is its default
    assert client.get("/api/experiments/?scope=&limit=", **auth(key)).status_code == 200


def test_posts_need_no_csrf_cookie_only_the_token(key, sent, user):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)  # a session too: still no CSRF check, and the token decides
    response = post_json(strict, "/api/experiments/", key, {"name": "tiny", "config": tiny_config()})
    assert response.status_code == 201, response.content
    assert strict.post(f"/api/experiments/{response.json()['id']}/cancel/", **auth(key)).status_code == 200
    assert strict.post("/api/experiments/", b"{}", content_type="application/json").status_code == 401
