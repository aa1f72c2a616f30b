"""docker-compose.yml: parsed and interpolated here (no container engine needed), then checked by
Debian's `docker-compose config` where it is installed (`make test` installs it)."""

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
#: What .env must hold (docker-compose.yml's header says so).
REQUIRED = {"LFL_SECRET_KEY": "k" * 50, "POSTGRES_PASSWORD": "pw-from-env"}
#: ${NAME}, ${NAME:-default} or ${NAME:?message}, as Compose interpolates them.
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<how>[-?])(?P<text>[^}]*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(value, env: dict):
    """`value` (parsed YAML) with every ${...} replaced from `env` (MissingVariable for an unset ${X:?...})."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match):
        name, how, text = match["name"], match["how"], match["text"]
        if env.get(name):
            return env[name]
        if how == "?":
            raise MissingVariable(f"{name}: {text}")
        return text if how == "-" else ""

    return VARIABLE.sub(replace, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    """The file as Compose runs it with the required .env values set."""
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), REQUIRED)


def test_the_five_services_exist(compose):
    assert set(compose["services"]) == {"postgres", "redis", "web", "worker", "coordinator"}


def test_web_and_worker_run_the_same_image_built_from_this_repository(compose):
    web, worker = compose["services"]["web"], compose["services"]["worker"]
    assert web["image"] == worker["image"]  # the worker runs what `up --build` built for the web
    assert web["build"] == "." and (ROOT / "Dockerfile").is_file()


def test_the_worker_reserves_an_nvidia_gpu(compose):
    [device] = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and device["count"] >= 1


def test_web_and_worker_reach_the_database_and_redis_services(compose):
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    for name in ("web", "worker", "coordinator"):
        env = services[name]["environment"]
        database, broker = urlsplit(env["DATABASE_URL"]), urlsplit(env["REDIS_URL"])
        assert (database.scheme, database.hostname, database.port) == ("postgres", "postgres", 5432)
        assert (database.username, database.path) == (postgres["POSTGRES_USER"], f"/{postgres['POSTGRES_DB']}")
        assert database.password == postgres["POSTGRES_PASSWORD"] == REQUIRED["POSTGRES_PASSWORD"]
        assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
        assert env["LFL_SECRET_KEY"] == REQUIRED["LFL_SECRET_KEY"] and env["LFL_DEBUG"] == "0"
    assert services["web"]["environment"] == services["worker"]["environment"]  # one secret key, one database


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_the_secret_key_and_the_database_password_must_come_from_the_environment(name):
    without = {key: value for key, value in REQUIRED.items() if key != name}
    with pytest.raises(MissingVariable, match=name):
        interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), without)


def test_web_runs_migrations_and_daphne_and_the_worker_celery(compose):
    web, worker = " ".join(compose["services"]["web"]["command"]), compose["services"]["worker"]["command"]
    assert "manage.py migrate" in web and "daphne" in web and "lfl_web.asgi:application" in web
    assert worker[:4] == ["celery", "-A", "lfl_web", "worker"]
    # searches and their chunks, under a name unique per container (so `--scale worker=N` works)
    assert worker[worker.index("-Q") + 1] == f"celery,{settings.LFL_EVALUATION_QUEUE}"
    assert worker[worker.index("-n") + 1] == "worker@%h"
    assert compose["services"]["coordinator"]["command"] == ["python", "manage.py", "coordinate"]
    assert "deploy" not in compose["services"]["coordinator"]  # it needs no GPU


def test_make_test_installs_docker_compose():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:.*\bchromium\b", makefile, re.M)
    recipe = re.search(r"^chromium:\n((?:\t.*\n)+)", makefile, re.M)[1]
    assert "command -v docker-compose" in recipe and re.search(r"apt-get install .*\bdocker-compose\b", recipe)


def docker_compose(tmp_path, env: dict) -> subprocess.CompletedProcess:
    """`docker-compose config` of the file with exactly `env` as .env (no stray .env or shell values)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (`make test` installs it: apt-get install docker-compose)")
    (tmp_path / "empty.env").write_text("")
    shell = {key: value for key, value in os.environ.items() if key not in REQUIRED}
    return subprocess.run([binary, "--env-file", str(tmp_path / "empty.env"), "-f", str(COMPOSE_FILE), "config",
                           "--quiet"], env={**shell, **env}, capture_output=True, text=True, timeout=60)


def test_docker_compose_accepts_the_file(tmp_path):
    result = docker_compose(tmp_path, REQUIRED)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_docker_compose_refuses_to_run_without_a_required_value(tmp_path, name):
    result = docker_compose(tmp_path, {key: value for key, value in REQUIRED.items() if key != name})
    assert result.returncode != 0 and f"set {name} in .env" in result.stderr
