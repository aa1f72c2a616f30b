"""The first administrator of a fresh installation (never a fixed default password)."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model, password_validation


def ensure_admin(username: str, password: str | None = None) -> str | None:
    """Create superuser `username` when there is no superuser yet.

    Its password is `password` (checked by Django's password validators, ValidationError if weak)
    or a random one. Returns the password when an account was created, None otherwise.
    """
    users = get_user_model()
    if users.objects.filter(is_superuser=True).exists():
        return None
    chosen = password or secrets.token_urlsafe(12)
    password_validation.validate_password(chosen, users(username=username))
    users.objects.create_superuser(username=username, email="", password=chosen)
    return chosen
