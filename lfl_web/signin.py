"""Sign-in throttling, on the site's and the admin's login page alike (django-axes does the counting).

After LFL_LOGIN_FAILURE_LIMIT failed sign-ins for one username, or from one address, both are
refused for LFL_LOGIN_COOLOFF_MINUTES; every further attempt meanwhile starts the wait again, and a
successful sign-in clears the count. Axes records the failures in the database, so every web
process sees the same count. The API's tokens never pass through `authenticate`, so they are
neither counted nor locked.
"""

from __future__ import annotations

from axes.helpers import get_cool_off
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render


def lockout_message(cooloff_minutes: float) -> str:
    """What a locked-out sign-in is told: 'Too many failed sign-ins; try again in 15 minutes.'"""
    unit = "minute" if cooloff_minutes == 1 else "minutes"
    return f"Too many failed sign-ins; try again in {cooloff_minutes:g} {unit}."


def locked_out(request, *_):
    """AXES_LOCKOUT_CALLABLE: the sign-in page again (429), saying why and for how long.

    A failed attempt during the lockout restarts the cool-off, so the configured time is exactly
    what is left at this moment. The form is unbound: validating it would try to sign in again.
    """
    username = request.POST.get("username", "")
    context = {
        "form": AuthenticationForm(request, initial={"username": username}),
        "next": request.POST.get("next") or request.GET.get("next", ""),
        "locked_out": lockout_message(get_cool_off(request).total_seconds() / 60),
    }
    return render(request, "registration/login.html", context, status=429)
