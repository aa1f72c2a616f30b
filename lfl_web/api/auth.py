"""Token authentication for the JSON API.

Every endpoint, reads included, needs an ``Authorization: Token <key>`` header; a signed-in
browser session is ignored. One rule for all endpoints is easy to reason about, and because no
cookie can act for the user, the API needs no CSRF protection (its views are CSRF exempt).
"""

from __future__ import annotations

from ninja.security import APIKeyHeader

from lfl_web.api.models import ApiToken

SCHEME = "token"


class AuthenticationFailed(Exception):
    """No usable token; the message says why (shown to the client with status 401)."""


def token_from_header(header: str) -> ApiToken:
    """The token named by an Authorization header value, or AuthenticationFailed."""
    if not header:
        raise AuthenticationFailed("authentication required: send the header 'Authorization: Token <key>'")
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() != SCHEME or not key.strip():
        raise AuthenticationFailed("malformed Authorization header: expected 'Token <key>'")
    token = ApiToken.objects.authenticate(key.strip())
    if token is None:
        raise AuthenticationFailed("invalid or revoked API token")
    return token


class TokenAuth(APIKeyHeader):
    """Every operation's authentication: the token in the Authorization header makes its user the
    request's user (replacing any session user); AuthenticationFailed otherwise. The OpenAPI
    document declares it as an API key sent in the Authorization header."""

    param_name = "Authorization"
    openapi_description = ("An API token, sent as the header 'Authorization: Token <key>' (the word Token, a "
                           "space, the key). Create one with 'manage.py create_api_token USERNAME' or in the admin.")

    def authenticate(self, request, key: str | None) -> ApiToken:
        token = token_from_header(key or "")
        request.user, request.api_token = token.user, token
        return token
