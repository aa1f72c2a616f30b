"""Sign-in throttling (django-axes): five failed sign-ins for one username or from one address lock
both out for the cool-off, with a clear message, on the site's and the admin's login page alike."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.db.models import F
from django.urls import reverse

from lfl_web.api.models import ApiToken

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "a-long-test-password"  # the `user` and `other_user` fixtures' password
LOCKED = "Too many failed sign-ins; try again in 15 minutes."


@pytest.fixture(autouse=True)
def throttling(settings):
    """The documented defaults, whatever this shell's LFL_LOGIN_* say; a quick hasher, since every
    attempt here checks a password."""
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


def sign_in(client, username, password, ip="10.0.0.1", url=None):
    return client.post(url or reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def fail(client, times, username="ada", ip="10.0.0.1", url=None):
    return [sign_in(client, username, "wrong password", ip, url).status_code for _ in range(times)]


def test_five_failures_refuse_even_the_right_password_with_a_message(client, user):
    assert fail(client, 4) == [200] * 4
    fifth = sign_in(client, "ada", "wrong password")
    assert fifth.status_code == 429 and LOCKED in fifth.content.decode()
    right = sign_in(client, "ada", PASSWORD)
    page = right.content.decode()
    assert right.status_code == 429 and LOCKED in page and not signed_in(client)
    assert 'name="username"' in page and 'value="ada"' in page  # the sign-in page, ready for later


def test_another_user_from_another_address_is_unaffected(client, user, other_user):
    fail(client, 5, "ada", "10.0.0.1")
    response = sign_in(client, "grace", PASSWORD, ip="10.0.0.2")
    assert response.status_code == 302 and signed_in(client)


def test_one_address_is_locked_for_every_username(client, user, other_user):
    for name in ("x1", "x2", "x3", "x4", "x5"):
        fail(client, 1, name, "10.0.0.3")
    assert sign_in(client, "grace", PASSWORD, ip="10.0.0.3").status_code == 429
    assert sign_in(client, "grace", PASSWORD, ip="10.0.0.4").status_code == 302


def test_one_username_is_locked_from_every_address(client, user):
    for last in range(1, 6):
        fail(client, 1, "ada", f"10.0.1.{last}")
    assert sign_in(client, "ada", PASSWORD, ip="10.0.1.99").status_code == 429


def test_sign_in_works_again_after_the_cool_off(client, user):
    fail(client, 5)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=15, seconds=1))
    response = sign_in(client, "ada", PASSWORD)
    assert response.status_code == 302 and signed_in(client)


def test_an_attempt_during_the_lockout_starts_the_cool_off_again(client, user):
    fail(client, 5)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=14))
    assert sign_in(client, "ada", PASSWORD).status_code == 429  # refused, and the wait starts over
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=14))
    assert sign_in(client, "ada", PASSWORD).status_code == 429


def test_a_successful_sign_in_resets_the_count(client, user):
    fail(client, 4)
    assert sign_in(client, "ada", PASSWORD).status_code == 302
    assert not AccessAttempt.objects.exists()
    client.logout()
    assert fail(client, 4) == [200] * 4
    assert sign_in(client, "ada", PASSWORD).status_code == 302


def test_the_admin_login_is_throttled_too(client):
    get_user_model().objects.create_superuser("boss", password=PASSWORD)
    admin_login = reverse("admin:login")
    assert fail(client, 4, "boss", url=admin_login) == [200] * 4
    response = sign_in(client, "boss", "wrong password", url=admin_login)
    assert response.status_code == 429 and LOCKED in response.content.decode()
    assert sign_in(client, "boss", PASSWORD, url=admin_login).status_code == 429 and not signed_in(client)
    assert sign_in(client, "boss", PASSWORD).status_code == 429  # and the site's page says the same


def test_api_tokens_are_neither_counted_nor_locked(client, user):
    key = ApiToken.objects.issue(user, "tests")[1]
    fail(client, 5)
    response = client.get(reverse("api:experiments"), HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR="10.0.0.1")
    assert response.status_code == 200
    bad = client.get(reverse("api:experiments"), HTTP_AUTHORIZATION="Token nope", REMOTE_ADDR="10.0.0.9")
    assert bad.status_code == 401 and AccessAttempt.objects.filter(ip_address="10.0.0.9").count() == 0


def test_the_limit_and_the_cool_off_come_from_the_environment():
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'lfl_web.settings'\n"
        "import django; django.setup()\n"
        "from django.conf import settings as s\n"
        "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME, s.AXES_LOCKOUT_PARAMETERS, s.AXES_RESET_ON_SUCCESS)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LFL_LOGIN_")}
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**env, "LFL_LOGIN_FAILURE_LIMIT": "3", "LFL_LOGIN_COOLOFF_MINUTES": "2.5"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[0] == "3 0:02:30 ['username', 'ip_address'] True"
    bad = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**env, "LFL_LOGIN_FAILURE_LIMIT": "0"})
    assert bad.returncode != 0 and "LFL_LOGIN_FAILURE_LIMIT must be at least 1" in bad.stderr


def test_the_lockout_page_comes_through_the_async_stack_too(async_client, user):
    """daphne runs the middleware asynchronously, where axes calls the lockout page differently."""

    def post(password):
        return async_to_sync(async_client.post)(reverse("login"), {"username": "ada", "password": password})

    assert [post("wrong password").status_code for _ in range(4)] == [200] * 4
    for password in ("wrong password", PASSWORD):
        response = post(password)
        assert response.status_code == 429 and LOCKED in response.content.decode()


def through_proxy(client, username, password, client_ip, proxy_ip="192.168.0.9", claimed=""):
    """A sign-in through one reverse proxy: it appends the address it was reached from."""
    forwarded = f"{claimed}, {client_ip}" if claimed else client_ip
    return client.post(reverse("login"), {"username": username, "password": password},
                       REMOTE_ADDR=proxy_ip, HTTP_X_FORWARDED_FOR=forwarded)


def test_behind_a_trusted_proxy_one_clients_failures_do_not_lock_the_others(client, user, other_user, settings):
    settings.LFL_TRUSTED_PROXIES = 1
    for _ in range(5):
        through_proxy(client, "mallory", "wrong password", "203.0.113.5")
    assert through_proxy(client, "mallory", "wrong password", "203.0.113.5").status_code == 429
    response = through_proxy(client, "grace", PASSWORD, "198.51.100.7")  # another client, same proxy
    assert response.status_code == 302 and signed_in(client)


def test_behind_a_trusted_proxy_a_client_cannot_escape_by_writing_its_own_forwarded_header(client, user, settings):
    settings.LFL_TRUSTED_PROXIES = 1
    for n in range(5):  # a new made-up address each time, left of what the proxy appended
        through_proxy(client, f"user{n}", "wrong password", "203.0.113.5", claimed=f"10.9.9.{n}")
    assert through_proxy(client, "ada", PASSWORD, "203.0.113.5", claimed="10.9.9.99").status_code == 429


def test_reached_directly_the_forwarded_header_is_ignored(client, user, settings):
    settings.LFL_TRUSTED_PROXIES = 0
    for n in range(5):
        client.post(reverse("login"), {"username": f"user{n}", "password": "x"}, REMOTE_ADDR="10.0.0.1",
                    HTTP_X_FORWARDED_FOR=f"10.9.9.{n}")
    assert sign_in(client, "ada", PASSWORD, ip="10.0.0.1").status_code == 429  # the address is locked
