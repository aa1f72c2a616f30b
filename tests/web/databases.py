"""The test database as a URL, for the subprocesses (Celery worker, `manage.py runstack`) that share it."""

from __future__ import annotations

from urllib.parse import quote

from django.db import connection


def shared_database_url() -> str:
    """DATABASE_URL of the database this test runs on: the SQLite file, or on PostgreSQL
    (LFL_TEST_DATABASE_URL) the `test_<name>` database that pytest-django created."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    if connection.vendor != "postgresql":
        raise NotImplementedError(f"no URL for a {connection.vendor} test database")
    auth = quote(params["USER"] or "", safe="")
    if params["PASSWORD"]:
        auth += ":" + quote(params["PASSWORD"], safe="")
    host = quote(params["HOST"] or "localhost", safe="")  # a socket folder is written %2F...
    port = f":{params['PORT']}" if params["PORT"] else ""
    return f"postgres://{auth}{'@' if auth else ''}{host}{port}/{quote(params['NAME'], safe='')}"
