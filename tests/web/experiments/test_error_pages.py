"""Error pages with DEBUG off, as `make run` serves them: a 404 lists no URL patterns, a 500 shows no
traceback, a foreign Host gets a plain 400, and /static/ paths that climb out of the static
folders are 404 (never the file, never a 500)."""

import contextlib
import http.client
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.template import loader
from django.test import Client
from django.urls import path

from lfl_web import urls
from lfl_web.asgi import application
from lfl_web.redis_server import free_port
from lfl_web.stack.management.commands import runstack
from lfl_web.stack.supervisor import kill_group, wait_for_port

REPO = Path(__file__).resolve().parents[3]
TRAVERSALS = (
    "/static/../var/secret_key", "/static/%2e%2e/var/secret_key", "/static/..%2fvar%2fsecret_key",
    "/static/%2E%2E%2Fvar%2Fsecret_key", "/static/css/../../var/secret_key", "/static/css/%2e%2e/%2e%2e/var/secret_key",
)
DEBUG_WORDS = ("Traceback", "URLconf", "DisallowedHost", "ALLOWED_HOSTS", "Django tried these URL patterns")


def fails(request):
    raise RuntimeError("a detail only the log may show")


urlpatterns = [*urls.urlpatterns, path("fails/", fails)]  # this module is the 500 test's URLconf


def shows_no_debug_detail(page: str) -> bool:
    return not any(word in page for word in DEBUG_WORDS)


def test_a_404_lists_no_url_patterns(client, user, settings):
    assert settings.DEBUG is False
    client.force_login(user)
    response = client.get("/no-such-page/")
    page = response.content.decode()
    assert response.status_code == 404 and "Not found" in page
    assert shows_no_debug_detail(page) and "admin/" not in page and "api/" not in page


def test_a_foreign_host_gets_a_plain_400(client, db):
    response = client.get("/", HTTP_HOST="evil.example")
    page = response.content.decode()
    assert response.status_code == 400 and "Bad request" in page and shows_no_debug_detail(page)
    assert "evil.example" not in page


def test_a_500_shows_no_traceback(settings, db):
    settings.ROOT_URLCONF = __name__
    response = Client(raise_request_exception=False).get("/fails/")
    page = response.content.decode()
    assert response.status_code == 500 and "Something went wrong" in page
    assert shows_no_debug_detail(page) and "a detail only the log may show" not in page


def test_the_500_page_needs_no_request_and_no_database():
    page = loader.get_template("500.html").render()  # what Django's server_error does; no db fixture here
    assert "Something went wrong" in page and "/static/css/lfl.css" in page


def asgi_get(path: str) -> tuple[int, bytes]:
    """GET through the ASGI application that daphne serves (its static handler included)."""

    async def get():
        scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": path, "query_string": b"",
                 "headers": [(b"host", b"127.0.0.1")]}
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(timeout=10)
        body, more = b"", True
        while more:  # a file arrives in chunks; the last one may carry no body at all
            chunk = await communicator.receive_output(timeout=10)
            body, more = body + chunk.get("body", b""), chunk.get("more_body", False)
        return start["status"], body

    return async_to_sync(get)()


@pytest.mark.parametrize("traversal", TRAVERSALS)
def test_static_paths_that_climb_out_are_404(traversal):
    # daphne hands the application the decoded path; another server may not decode it
    for sent in {traversal, unquote(traversal)}:
        status, body = asgi_get(sent)
        assert status == 404, sent
        assert b"Not found" in body and b"Traceback" not in body


def test_static_files_are_served_with_debug_off(settings):
    assert settings.DEBUG is False
    status, body = asgi_get("/static/css/lfl.css")
    assert status == 200 and b"header.site" in body


@contextlib.contextmanager
def daphne_as_runstack_starts_it(tmp_path, monkeypatch):
    """daphne with runstack's command and environment (no LFL_DEBUG given); yields its port."""
    monkeypatch.delenv("LFL_DEBUG", raising=False)
    env = {k: v for k, v in runstack.child_env("").items() if k not in ("DATABASE_URL", "LFL_SERVE_STATIC")}
    env["LFL_VAR_DIR"] = str(tmp_path)
    port = free_port()
    log_path = tmp_path / "daphne.log"
    with log_path.open("w") as log:
        daphne = subprocess.Popen(runstack.daphne_command("127.0.0.1", port), cwd=REPO, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_for_port("127.0.0.1", port, timeout=60, alive=lambda: daphne.poll() is None), log_path.read_text()
        yield port
    finally:
        kill_group(daphne.pid)
        daphne.wait()


def raw_get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
    """GET `path` exactly as written (no client-side normalisation of `..`)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def test_daphne_as_make_run_starts_it_serves_plain_error_pages(tmp_path, monkeypatch):
    secret = (REPO / "var" / "secret_key").read_text().strip() if (REPO / "var" / "secret_key").exists() else None
    with daphne_as_runstack_starts_it(tmp_path, monkeypatch) as port:
        for traversal in TRAVERSALS:
            status, page = raw_get(port, traversal)
            assert status == 404 and "Not found" in page, (traversal, status, page[:300])
            assert secret is None or secret not in page
        status, page = raw_get(port, "/no-such-page/")
        assert status == 404 and shows_no_debug_detail(page)
        status, page = raw_get(port, "/accounts/login/", host="evil.example")
        assert status == 400 and "Bad request" in page and shows_no_debug_detail(page)
        assert raw_get(port, "/static/css/lfl.css")[0] == 200


def test_a_foreign_host_is_one_line_in_the_server_log_not_a_traceback(client, db):
    import io
    import logging

    handlers = logging.getLogger("django.security.DisallowedHost").handlers
    [handler] = [h for h in handlers if isinstance(h, logging.StreamHandler) and h.filters]  # the server's
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        response = client.get("/", HTTP_HOST="evil.example")
    finally:
        handler.setStream(previous)
    said = stream.getvalue()
    assert response.status_code == 400
    assert "Invalid HTTP_HOST header: 'evil.example'" in said and "Traceback" not in said
    assert len(said.strip().splitlines()) == 1
