"""The API's HTTP conventions: JSON errors, token-only endpoints, bounded JSON bodies, and the
field-named messages that invalid input (body fields, query parameters) is answered with.

Errors are ``{"error": message}``, or ``{"errors": {field: message}}`` when fields are at fault.
"""

from __future__ import annotations

import functools
import json

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from ninja.parser import Parser

from lfl_web.api.auth import AuthenticationFailed, token_from_header

MAX_BODY_BYTES = 1024 * 1024
EMPTY_BODY = "the request body is empty; send a JSON object"
JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
              bool: "a boolean", type(None): "null"}
#: pydantic's error for a value of the wrong JSON type -> the type the field wants.
EXPECTED_TYPES = {"string_type": "a string", "bool_type": "a boolean", "int_type": "a number",
                  "int_from_float": "a number", "float_type": "a number", "dict_type": "an object",
                  "model_type": "an object", "list_type": "an array"}


class ApiError(Exception):
    """Stops a view with an error response: `error` (one message) or `errors` (by field), and any
    `headers` the status calls for (Allow, Retry-After, WWW-Authenticate)."""

    def __init__(self, status: int, error: str = "", errors: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(error or errors)
        self.status, self.error, self.errors, self.headers = status, error, errors, headers or {}

    def response(self) -> JsonResponse:
        body = {"errors": self.errors} if self.errors else {"error": self.error}
        response = JsonResponse(body, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def unauthorized(exc: AuthenticationFailed) -> ApiError:
    return ApiError(401, str(exc), headers={"WWW-Authenticate": "Token"})


def json_type(value) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def allow_only(view, methods: tuple[str, ...], *, token: bool = True):
    """`view` (an API path's view) answering only `methods`: any other is a JSON 405 naming them
    (header Allow), after the token check where `token` (a 401 comes first, as on every endpoint).
    CSRF exempt: the API authenticates by token only."""

    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        if request.method in methods:
            return view(request, *args, **kwargs)
        if token:
            try:
                token_from_header(request.headers.get("Authorization", ""))
            except AuthenticationFailed as exc:
                return unauthorized(exc).response()
        return ApiError(405, f"method {request.method} not allowed here; use {' or '.join(methods)}",
                        headers={"Allow": ", ".join(methods)}).response()

    guarded.csrf_exempt = True
    return guarded


class JsonBodyParser(Parser):
    """Request bodies are one JSON object (whatever the Content-Type says), at most MAX_BODY_BYTES."""

    def parse_body(self, request) -> dict:
        return read_json_object(request)


def read_json_object(request) -> dict:
    """The request body as a JSON object, or ApiError 400 (malformed, not an object) / 413 (too big)."""
    body = read_body(request)
    if not body.strip():
        raise ApiError(400, EMPTY_BODY)
    try:
        data = json.loads(body, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON body: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {json_type(data)}")
    return data


def too_big() -> ApiError:
    return ApiError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")


def read_body(request) -> bytes:
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_big()  # before reading any of it
    try:
        body = request.body
    except RequestDataTooBig:
        raise too_big() from None
    if len(body) > MAX_BODY_BYTES:
        raise too_big()
    return body


def reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (use a finite number or null)")


def field_message(error: dict, known: tuple[str, ...]) -> str:
    """What a pydantic error says to a client: the old hand-written messages for the usual faults
    (missing, unknown, wrong JSON type), else the validator's own message (see inputs.py)."""
    kind = error["type"]
    if kind == "missing":
        return "this field is required"
    if kind == "extra_forbidden":
        return f"unknown field (known: {', '.join(known)})"
    if kind in EXPECTED_TYPES:
        value = error.get("input")
        if EXPECTED_TYPES[kind] == json_type(value):  # a float (2.5, or 2.0) where an integer belongs
            return f"must be an integer, got {value!r}"
        return f"must be {EXPECTED_TYPES[kind]}, got {json_type(value)}"
    return error["msg"]
