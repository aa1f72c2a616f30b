"""docker-compose.yml: parsed here (no container engine needed); `docker compose config` where available."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[3] / "docker-compose.yml"
SHARED = ("DATABASE_URL", "REDIS_URL", "LFL_SECRET_KEY")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_the_four_services_exist(compose):
    assert set(compose["services"]) == {"postgres", "redis", "web", "worker"}


def test_web_and_worker_share_database_redis_and_secret_without_a_fixed_secret(compose):
    web, worker = compose["services"]["web"]["environment"], compose["services"]["worker"]["environment"]
    for name in SHARED:
        assert web[name] == worker[name]
    assert web["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in web["DATABASE_URL"]
    assert web["REDIS_URL"] == "redis://redis:6379/0"
    assert web["LFL_SECRET_KEY"].startswith("${LFL_SECRET_KEY:?")  # must come from the environment
    assert web["LFL_DEBUG"] == "0"


def test_web_runs_daphne_and_the_worker_celery_on_a_reserved_gpu(compose):
    web, worker = compose["services"]["web"], compose["services"]["worker"]
    assert "daphne" in " ".join(web["command"]) and "lfl_web.asgi:application" in " ".join(web["command"])
    assert worker["command"][:4] == ["celery", "-A", "lfl_web", "worker"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def test_the_file_documents_workers_on_other_gpu_machines():
    text = COMPOSE_FILE.read_text()
    assert "other GPU machines" in text and "same" in text


def compose_command() -> list[str]:
    """`docker compose` (the plugin) where installed, else Debian's standalone `docker-compose`."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed: apt-get install docker-compose "
                "(make test installs it)")


def test_docker_compose_accepts_the_file():
    env = {**os.environ, "LFL_SECRET_KEY": "x" * 50, "POSTGRES_PASSWORD": "pw"}
    result = subprocess.run([*compose_command(), "-f", str(COMPOSE_FILE), "config", "--quiet"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
