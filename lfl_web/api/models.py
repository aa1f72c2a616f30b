"""API tokens. Only a SHA-256 hash of each key is stored (plus a short prefix to tell keys apart):
whoever reads the database cannot use a token, and a lost key is replaced, never recovered."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

KEY_PATTERN = re.compile(r"[0-9a-f]{40}")
PREFIX_LENGTH = 8
#: How stale `last_used` may get: one write per token per minute, not one per request (SQLite
#: has a single writer, and the search workers need it more).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def issue(self, user, name: str = "") -> tuple[ApiToken, str]:
        """A new token for `user`; returns it with its key, which is never stored or shown again."""
        token = self.model(user=user, name=name)
        key = token.set_new_key()
        token.save()
        return token, key

    def authenticate(self, key: str) -> ApiToken | None:
        """The token with this key if it belongs to an active user, else None.

        The key is compared through its hash (an indexed lookup), so how long this takes says
        nothing about how much of a guessed key was right.
        """
        if not KEY_PATTERN.fullmatch(key):
            return None
        token = self.select_related("user").filter(key_hash=hash_key(key)).first()
        if token is None or not token.user.is_active:
            return None
        token.note_use()
        return token


class ApiToken(models.Model):
    """A key that lets a program use the JSON API as `user`. Delete it to revoke it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, default="", help_text="What the token is for.")
    prefix = models.CharField(max_length=PREFIX_LENGTH, editable=False, help_text="The key's first characters.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["user", "-created"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'}, {self.user})"

    def set_new_key(self) -> str:
        """Give the (unsaved) token a fresh random key; returns the key."""
        key = secrets.token_hex(20)  # 40 hex digits, 160 random bits
        self.prefix, self.key_hash = key[:PREFIX_LENGTH], hash_key(key)
        return key

    def note_use(self) -> None:
        now = timezone.now()
        if self.last_used is None or now - self.last_used >= LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=self.pk).update(last_used=now)
            self.last_used = now
