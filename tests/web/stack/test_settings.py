"""Settings from the environment, the development secret, and what importing the web stack loads."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import dj_database_url
import pytest
from channels_redis.core import RedisChannelLayer
from django.db import connection

from lfl_web.env import development_secret_key, env_bool, env_list, env_number
from lfl_web.layers import redis_channel_layer

from ..databases import shared_database_url

REPO = Path(__file__).resolve().parents[3]


def test_env_bool_list_and_number(monkeypatch):
    monkeypatch.setenv("X_FLAG", "Yes")
    assert env_bool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ValueError, match="X_FLAG must be one of"):
        env_bool("X_FLAG", False)
    monkeypatch.setenv("X_LIST", " a.example , ,b ")
    assert env_list("X_LIST", []) == ["a.example", "b"]
    assert env_list("X_UNSET_LIST", ["localhost"]) == ["localhost"]
    monkeypatch.setenv("X_NUMBER", "soon")
    with pytest.raises(ValueError, match="X_NUMBER must be a number"):
        env_number("X_NUMBER", 1.0)


def test_the_development_secret_is_random_private_and_stable(tmp_path):
    first = development_secret_key(tmp_path / "a")
    assert len(first) >= 50 and development_secret_key(tmp_path / "a") == first
    assert development_secret_key(tmp_path / "b") != first
    assert stat.S_IMODE((tmp_path / "a" / "secret_key").stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["secret_key"]  # no temporary files left


def settings_in_subprocess(code: str, **env) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LFL_") and k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**clean, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_production_settings_come_from_the_environment(tmp_path):
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'lfl_web.settings'\n"
        "from django.conf import settings as s\n"
        "print(s.SECRET_KEY, s.DEBUG, s.ALLOWED_HOSTS, s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL,\n"
        "      s.CHANNEL_LAYERS['default']['BACKEND'], s.CELERY_TASK_ACKS_LATE, s.CELERY_WORKER_PREFETCH_MULTIPLIER)\n"
    )
    out = settings_in_subprocess(
        code, LFL_SECRET_KEY="from-env", LFL_DEBUG="0", LFL_ALLOWED_HOSTS="lfl.example.org",
        DATABASE_URL="postgres://u:p@db:5432/lfl", REDIS_URL="redis://r:6379/0", LFL_VAR_DIR=str(tmp_path),
    )
    assert out == ("from-env False ['lfl.example.org'] django.db.backends.postgresql redis://r:6379/0 "
                   "channels_redis.core.RedisChannelLayer True 1")
    assert not (tmp_path / "secret_key").exists()  # a given key is never replaced by a generated one


def test_development_defaults_need_no_configuration(tmp_path):
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'lfl_web.settings'\n"
        "from django.conf import settings as s\n"
        "print(s.DEBUG, s.DATABASES['default']['NAME'], s.CELERY_BROKER_URL, s.CHANNEL_LAYERS['default']['BACKEND'])\n"
    )
    out = settings_in_subprocess(code, LFL_VAR_DIR=str(tmp_path))
    assert out == f"False {tmp_path / 'db.sqlite3'} memory:// channels.layers.InMemoryChannelLayer"
    assert (tmp_path / "secret_key").exists()


def test_the_test_database_url_comes_first_and_sqlite_options_stay_with_sqlite(tmp_path):
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'lfl_web.settings'\n"
        "from django.conf import settings as s\n"
        "d = s.DATABASES['default']\n"
        "print(d['ENGINE'], d['HOST'], d['NAME'], d.get('OPTIONS', {}), d.get('TEST', {}))\n"
    )
    out = settings_in_subprocess(code, LFL_VAR_DIR=str(tmp_path), DATABASE_URL="postgres://u:p@db:5432/lfl",
                                 LFL_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/test")
    assert out == "django.db.backends.postgresql 127.0.0.1 test {} {}"  # pytest-django makes test_test


def test_the_shared_database_url_names_this_test_database(db):
    shared = dj_database_url.parse(shared_database_url())
    assert shared["NAME"] == connection.settings_dict["NAME"] and shared["ENGINE"] == connection.settings_dict["ENGINE"]
    assert connection.vendor == "sqlite" or shared["NAME"].startswith("test_")


def test_importing_the_web_stack_and_the_tasks_does_not_load_torch(tmp_path):
    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'lfl_web.settings'\n"
        "import django; django.setup()\n"
        "import lfl_web.asgi, lfl_web.urls, lfl_web.experiments.tasks, lfl_web.experiments.admin\n"
        "from lfl_web import celery_app; celery_app.loader.import_default_modules()\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'sympy') if m in sys.modules))\n"
    )
    assert settings_in_subprocess(code, LFL_VAR_DIR=str(tmp_path)) == "[]"


def test_the_redis_layer_reads_longer_than_it_blocks_waiting_for_messages():
    config = redis_channel_layer("redis://127.0.0.1:1/0")["CONFIG"]
    assert config["hosts"][0]["socket_timeout"] > RedisChannelLayer(**config).brpop_timeout
