"""The API's HTTP conventions: JSON errors, token-only endpoints, bounded JSON bodies, query params.

Errors are ``{"error": message}``, or ``{"errors": {field: message}}`` when fields are at fault.
"""

from __future__ import annotations

import functools
import json

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from lfl_web.api.auth import AuthenticationFailed, authenticate

MAX_BODY_BYTES = 1024 * 1024
JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
              bool: "a boolean", type(None): "null"}


class ApiError(Exception):
    """Stops a view with an error response: `error` (one message) or `errors` (by field)."""

    def __init__(self, status: int, error: str = "", errors: dict[str, str] | None = None):
        super().__init__(error or errors)
        self.status, self.error, self.errors = status, error, errors

    def response(self) -> JsonResponse:
        body = {"errors": self.errors} if self.errors else {"error": self.error}
        return JsonResponse(body, status=self.status)


def json_type(value) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def api_endpoint(*methods: str):
    """Decorate a view: CSRF exempt, token required (401), only `methods` (405), ApiError -> JSON."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            try:
                authenticate(request)
                if request.method not in methods:
                    response = ApiError(405, f"method {request.method} not allowed here; use {' or '.join(methods)}")
                    return with_header(response.response(), "Allow", ", ".join(methods))
                return view(request, *args, **kwargs)
            except AuthenticationFailed as exc:
                return with_header(ApiError(401, str(exc)).response(), "WWW-Authenticate", "Token")
            except ApiError as exc:
                return exc.response()

        return wrapped

    return decorate


def with_header(response, name: str, value: str):
    response[name] = value
    return response


def read_json_object(request) -> dict:
    """The request body as a JSON object, or ApiError 400 (malformed, not an object) / 413 (too big)."""
    body = read_body(request)
    if not body.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    try:
        data = json.loads(body, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON body: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {json_type(data)}")
    return data


def read_body(request) -> bytes:
    too_big = ApiError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_big  # before reading any of it
    try:
        body = request.body
    except RequestDataTooBig:
        raise too_big from None
    if len(body) > MAX_BODY_BYTES:
        raise too_big
    return body


def reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (use a finite number or null)")


def choice_param(request, name: str, choices, default: str) -> str:
    """A query parameter that must be one of `choices` (ApiError 400 naming it otherwise)."""
    value = request.GET.get(name, "") or default
    if value not in choices:
        raise ApiError(400, errors={name: f"must be one of {', '.join(choices)}, got {value!r}"})
    return value


def int_param(request, name: str, default: int, low: int, high: int) -> int:
    text = request.GET.get(name, "") or str(default)
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ApiError(400, errors={name: f"must be an integer from {low} to {high}, got {text!r}"})
    return int(text)
