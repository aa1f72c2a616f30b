"""lfl's Django project: settings, ASGI routing (Channels), the Celery app and the web apps."""

from lfl_web.celery import app as celery_app

__all__ = ("celery_app",)
