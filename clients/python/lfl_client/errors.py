"""The server's errors as exceptions. A 400 that names fields raises `InvalidRequest`, whose
message and `errors` name each field ("config.search.crossover_rate: must be in [0, 1], got 1.5")."""

from __future__ import annotations


class LflError(Exception):
    """An error answer of the server (`status`), or no answer at all (`status` 0)."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None, retry_after: float | None = None):
        self.status, self.message, self.errors, self.retry_after = status, message, errors or {}, retry_after
        super().__init__(f"{status}: {message}" if status else message)


class InvalidRequest(LflError):
    """400: what was sent is wrong; `errors` maps each field at fault to what is wrong with it."""


class AuthenticationFailed(LflError):
    """401: no token, a malformed one, or one that was revoked."""


class PermissionDenied(LflError):
    """403: only the owner (or staff) may do this."""


class NotFound(LflError):
    """404: nothing there that this token's user may see."""


class Conflict(LflError):
    """409: the request does not fit the current state (e.g. cancelling a finished experiment)."""


class TooManyRequests(LflError):
    """429: the user already has as many experiments queued or running as the server allows."""


class ServiceUnavailable(LflError):
    """503: the server's task queue is unreachable; nothing was saved, send it again (`retry_after` seconds)."""


class Timeout(LflError):
    """`Client.wait` ran out of time before the work finished."""


BY_STATUS = {400: InvalidRequest, 401: AuthenticationFailed, 403: PermissionDenied, 404: NotFound, 409: Conflict,
             429: TooManyRequests, 503: ServiceUnavailable}


def error_for(status: int, body: object, retry_after: str | None = None) -> LflError:
    """The exception for an error answer: its JSON body's "error", or "errors" by field."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, dict) and errors:
        message = "; ".join(f"{name}: {text}" for name, text in errors.items())
    elif isinstance(body, dict) and isinstance(body.get("error"), str):
        message, errors = body["error"], None
    else:
        message, errors = f"the server answered {status} without a JSON error ({str(body)[:200]!r})", None
    try:
        wait = float(retry_after) if retry_after else None
    except ValueError:
        wait = None
    return BY_STATUS.get(status, LflError)(status, message, errors, wait)
