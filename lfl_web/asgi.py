"""ASGI entry point: HTTP goes to Django, websockets to the Channels consumers (signed-in users only)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lfl_web.settings")
django_http = get_asgi_application()  # sets Django up before the imports below touch models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from lfl_web.experiments.live.routing import websocket_urlpatterns  # noqa: E402
from lfl_web.static_files import StaticFilesHandler  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": StaticFilesHandler(django_http) if settings.LFL_SERVE_STATIC else django_http,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
