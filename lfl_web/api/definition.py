"""The API as one django-ninja definition: token authentication on every operation, JSON bodies
read by http.py's rules, every failure answered in the API's error format, and the OpenAPI
document (/api/openapi.json) and its docs page (/api/docs) generated from the same definition.

views.py registers each operation with `endpoint`; urls.py serves `url_patterns()`.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from django.urls import URLPattern
from ninja import NinjaAPI
from ninja.errors import HttpError

from lfl_web.api.auth import AuthenticationFailed, TokenAuth
from lfl_web.api.http import (
    EMPTY_BODY,
    ApiError,
    JsonBodyParser,
    allow_only,
    field_message,
    too_big,
    unauthorized,
)
from lfl_web.api.outputs import ErrorBody, FieldErrors

DESCRIPTION = """The JSON API of lfl: start and follow loss-function searches, read the leaderboard,
download learned losses and meta-test them on other tasks.

Every operation needs the header `Authorization: Token <key>` (a browser session is not accepted);
this document and the docs page need none. Errors are `{"error": message}`, or
`{"errors": {field: message}}` naming each field at fault (a configuration field by its dotted path).
A wrong method is a 405 with the header Allow; a body over 1 MiB is a 413."""

#: The API's URL name -> the methods it answers there, in the order they were registered.
METHODS_BY_NAME: dict[str, list[str]] = {}
#: The OpenAPI document and its docs page: served without a token (they hold no data), GET only.
PUBLIC_PAGES = ("openapi-json", "openapi-view")


class Api(NinjaAPI):
    def validation_error_from_error_contexts(self, error_contexts) -> ApiError:
        """A 400 naming each field (body field, query parameter) at fault in the API's words
        (`http.field_message`), or the empty body's message when there is no body at all."""
        errors: dict[str, str] = {}
        for context in error_contexts:
            model = context.model
            argument = getattr(model, "__read_from_single_attr__", None)  # a body read into one argument
            for error in context.pydantic_validation_error.errors(include_url=False):
                loc, known = model.__ninja_flatten_map_reverse__.get(error["loc"], error["loc"]), ()
                if argument and loc[:1] == (argument,):
                    loc, known = loc[1:], tuple(model.model_fields[argument].annotation.model_fields)
                if not loc:
                    return ApiError(400, EMPTY_BODY)
                errors.setdefault(".".join(map(str, loc)), field_message(error, known))
        return ApiError(400, errors=errors)


def http_error(request, exc: HttpError):
    """ninja's own HTTP errors; a body the parser refused keeps the parser's status and message."""
    if isinstance(exc.__cause__, ApiError):
        return exc.__cause__.response()
    return ApiError(exc.status_code, str(exc)).response()


api = Api(title="lfl API", version="1.0", description=DESCRIPTION, urls_namespace="api", auth=TokenAuth(),
          parser=JsonBodyParser(), openapi_url="/openapi.json", docs_url="/docs")
api.add_exception_handler(ApiError, lambda request, exc: exc.response())
api.add_exception_handler(AuthenticationFailed, lambda request, exc: unauthorized(exc).response())
api.add_exception_handler(RequestDataTooBig, lambda request, exc: too_big().response())
api.add_exception_handler(HttpError, http_error)
api.add_exception_handler(Http404, lambda request, exc: ApiError(404, str(exc) or "not found").response())


def endpoint(method: str, path: str, *, name: str, answer: dict, errors: tuple[int, ...] = (), **options):
    """Register the decorated view as the operation `method path`, with URL name `name` (several
    methods may share one) and the view's name as its operation id (a client's method name: keep
    it). `answer`: status -> output model; `errors`: the error statuses it may answer besides 401."""

    def register(view):
        METHODS_BY_NAME.setdefault(name, []).append(method)
        responses = {**answer, 401: ErrorBody,
                     **{status: ErrorBody | FieldErrors if status == 400 else ErrorBody for status in errors}}
        operation = api.api_operation([method], path, url_name=name, operation_id=view.__name__, response=responses,
                                      exclude_unset=True, **options)
        return operation(view)

    return register


def url_patterns() -> list[URLPattern]:
    """The API's URL patterns, each behind its method check (`http.allow_only`), with the OpenAPI
    document and docs page; ninja's root page is left out (urls.py answers /api/ itself)."""
    patterns = []
    for pattern in api.urls[0]:
        if pattern.name in METHODS_BY_NAME:
            view = allow_only(pattern.callback, tuple(METHODS_BY_NAME[pattern.name]))
        elif pattern.name in PUBLIC_PAGES:
            view = allow_only(pattern.callback, ("GET",), token=False)
        else:
            continue
        patterns.append(URLPattern(pattern.pattern, view, pattern.default_args, pattern.name))
    return patterns
