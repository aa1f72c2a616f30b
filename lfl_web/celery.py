"""The Celery application. Workers import this; it never imports torch (the task does, when it runs)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lfl_web.settings")

app = Celery("lfl_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
