# lfl — two commands do everything: `make run` (the web application) and `make test` (lint + every test).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-fast test-postgres lint venv quick run clean chromium

venv: $(STAMP)

# Reinstall only when a requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Debian packages the tests use: Chromium and its WebDriver (browser test) and docker-compose
# (`config` checks docker-compose.yml without a Docker engine). Installed when missing.
chromium:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || ! command -v docker-compose >/dev/null; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver docker-compose; \
	fi

test: $(STAMP) lint chromium
	$(PY) -m pytest -q

# Everyday work: ruff and every test but the `stack` ones (real Redis, daphne, Celery workers,
# Chromium; tests/conftest.py marks them). `make test`, what CI runs, keeps them.
test-fast: $(STAMP) lint
	$(PY) -m pytest -q -m "not stack"

# The web and worker tests again on PostgreSQL (CI runs this after `make test` when one answers on
# 127.0.0.1:5432). pytest-django creates and drops test_<name> in the server LFL_TEST_DATABASE_URL names.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
test-postgres: $(STAMP) chromium
	LFL_TEST_DATABASE_URL="$${LFL_TEST_DATABASE_URL:-$(TEST_DATABASE_URL)}" $(PY) -m pytest -q tests/web

# The README quick start: a small search on the bundled digits data, then meta-testing.
quick: $(STAMP)
	$(PY) -m search_engine search --config configs/quick.json --out runs/quick
	$(PY) -m search_engine evaluate --result runs/quick/result.json

# The web application on this machine: migrations, embedded Redis (unless REDIS_URL is set),
# daphne and a Celery worker, until Ctrl-C. Prints the URL to open and, on first start, the admin password.
run: $(STAMP)
	$(PY) manage.py runstack

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
