"""/api/...: the JSON API (operations in views.py, defined with django-ninja in definition.py; token
authentication, see auth.py), its OpenAPI document at /api/openapi.json and docs page at /api/docs,
and a JSON 404 for any other path."""

from django.urls import path, re_path

from lfl_web.api import views
from lfl_web.api.definition import url_patterns

app_name = "api"

urlpatterns = [
    *url_patterns(),
    path("", views.not_found, name="api-root"),  # the root the OpenAPI document's paths start from
    re_path(r"^(?P<path>.*)$", views.not_found),
]
