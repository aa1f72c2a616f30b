"""Sign-in throttling, on the site's and the admin's login page alike (django-axes does the counting).

After LFL_LOGIN_FAILURE_LIMIT failed sign-ins for one username, or from one address, both are
refused for LFL_LOGIN_COOLOFF_MINUTES; every further attempt meanwhile starts the wait again, and a
successful sign-in clears the count. Axes records the failures in the database, so every web
process sees the same count. The API's tokens never pass through `authenticate`, so they are
neither counted nor locked. Behind a reverse proxy, set LFL_TRUSTED_PROXIES to the number of proxies
in front of the web server, or every client would share the proxy's address (`client_address`).
"""

from __future__ import annotations

from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render


def client_address(request) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the address a failure is counted for.

    Directly reached (LFL_TRUSTED_PROXIES = 0, the default) it is the connection's own address and
    X-Forwarded-For is ignored, since a client can write anything there. Behind N trusted proxies,
    each appending the address it was reached from, it is the N-th address from the right of
    X-Forwarded-For (what the outermost of them saw); the entries left of it are the client's own
    and are ignored. A header with fewer entries than proxies means a request that did not come
    through them: the connection's address is used.
    """
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.LFL_TRUSTED_PROXIES
    if not proxies:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    return forwarded[-proxies] if len(forwarded) >= proxies else remote


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
