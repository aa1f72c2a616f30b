"""/static/ served by the ASGI app itself: daphne has no file server, and DEBUG may be off."""

from __future__ import annotations

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import SuspiciousFileOperation
from django.http import Http404


class StaticFilesHandler(ASGIStaticFilesHandler):
    """Django's static handler (it serves with DEBUG off too), with a path that climbs out of the
    static folders (`/static/../var/secret_key`, `%2e%2e`, `..%2f`) answered 404: Django raises
    SuspiciousFileOperation there, which this handler, outside every middleware, turns into a 500."""

    def serve(self, request):
        try:
            return super().serve(request)
        except SuspiciousFileOperation:
            raise Http404("not a static file") from None
