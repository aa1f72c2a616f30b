"""The client and the server's OpenAPI document agree: every client call is an operation of the
document (method, path, operation id), sends only inputs the operation declares, and reads only
fields its answer documents."""

from __future__ import annotations

import dataclasses
import re

import pytest
from lfl_client import OPERATIONS
from lfl_client.client import BODY_FIELDS, QUERY_FIELDS
from lfl_client.types import (
    Comparison,
    Experiment,
    ExperimentDetail,
    Generation,
    LeaderboardEntry,
    LearnedLoss,
    Transfer,
    Verdict,
)


@pytest.fixture(scope="module")
def document():
    from django.test import Client

    response = Client().get("/api/openapi.json")
    assert response.status_code == 200
    return response.json()


def operation(document, name: str) -> dict:
    method, template, operation_id = OPERATIONS[name]
    path = "/api" + template
    assert path in document["paths"], f"{name}: {path} is not a path of the document"
    found = document["paths"][path].get(method.lower())
    assert found is not None, f"{name}: {method} {path} is not an operation of the document"
    assert found["operationId"] == operation_id, name
    return found


def resolved(document, schema: dict) -> dict:
    for key in ("anyOf", "oneOf"):
        if key in schema:
            schema = next(s for s in schema[key] if s.get("type") != "null")
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("type") == "array":
        return resolved(document, schema["items"])
    return schema


def answer(document, name: str, *path: str) -> set[str]:
    """The fields documented for the success answer of client call `name`, or of the object under `path` in it."""
    responses = operation(document, name)["responses"]
    status = next(s for s in responses if s.startswith("2"))
    schema = resolved(document, responses[status]["content"]["application/json"]["schema"])
    for key in path:
        schema = resolved(document, schema["properties"][key])
    return set(schema["properties"])


def read(cls) -> set[str]:
    """The fields a typed object reads off an answer."""
    return {f.name for f in dataclasses.fields(cls)} - {"raw"}


def test_every_client_call_is_an_operation_of_the_document(document):
    ids = {op["operationId"] for methods in document["paths"].values() for op in methods.values()}
    assert {operation_id for _, _, operation_id in OPERATIONS.values()} <= ids
    for name in OPERATIONS:
        operation(document, name)


def test_the_client_sends_only_what_each_operation_declares(document):
    for name, sent in BODY_FIELDS.items():
        body = operation(document, name)["requestBody"]["content"]["application/json"]["schema"]
        assert set(sent) <= set(resolved(document, body)["properties"]), name
    for name, sent in QUERY_FIELDS.items():
        declared = {p["name"] for p in operation(document, name).get("parameters", []) if p["in"] == "query"}
        assert set(sent) <= declared, name
    for name, (_, template, _) in OPERATIONS.items():
        declared = {p["name"] for p in operation(document, name).get("parameters", []) if p["in"] == "path"}
        assert set(re.findall(r"{(\w+)}", template)) == declared, name


def test_the_typed_answers_read_only_documented_fields(document):
    assert read(Experiment) - {"work_estimate"} <= answer(document, "experiments", "experiments")
    assert read(Experiment) <= answer(document, "create_experiment")
    assert read(Experiment) - {"work_estimate"} <= answer(document, "cancel")
    detail = answer(document, "experiment", "experiment") | {"generations", "learned_losses"}
    assert read(ExperimentDetail) - {"work_estimate"} <= detail
    assert read(Generation) <= answer(document, "experiment", "generations")
    assert read(LearnedLoss) <= answer(document, "experiment", "learned_losses")
    assert read(Verdict) <= answer(document, "experiment", "learned_losses", "verdict")
    assert read(Comparison) <= answer(document, "experiment", "learned_losses", "tuned_comparison")
    assert read(LeaderboardEntry) <= answer(document, "leaderboard", "losses")
    assert read(Transfer) <= answer(document, "get_transfer")
    assert read(Transfer) <= answer(document, "transfers", "transfers")
    assert {"key", "label", "config"} <= answer(document, "presets", "presets")
