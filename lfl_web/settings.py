"""Django settings for lfl. Every deployment choice comes from an environment variable.

Variables (all optional for development; production sets the first three):

- LFL_SECRET_KEY: Django's secret key. Unset: a random key generated once into var/secret_key.
- DATABASE_URL: e.g. postgres://user:pass@host:5432/lfl. Unset: SQLite file var/db.sqlite3.
- LFL_TEST_DATABASE_URL: the database the test suite runs on, ahead of DATABASE_URL (CI: a local
  PostgreSQL; pytest-django creates and drops test_<name> in it). Unset: the tests use SQLite.
- REDIS_URL: Celery broker + result backend and the Channels layer. Unset: `make run` starts an
  embedded Redis and passes its URL on; other commands (shell, tests) keep tasks and channel
  messages inside their own process.
- LFL_DEBUG (default 0; 1 is developer mode: tracebacks and URL lists on error pages, never on a
  shared server), LFL_ALLOWED_HOSTS (default localhost,127.0.0.1,[::1]),
  LFL_CSRF_TRUSTED_ORIGINS (e.g. https://lfl.example.org), LFL_SERVE_STATIC (default 1: the ASGI
  app serves /static/ itself), LFL_VAR_DIR (default ./var: database, secret key, checkpoints),
  LFL_CHANNEL_LAYER ("redis" or "memory"; default redis when REDIS_URL is set),
  LFL_CANCEL_POLL_SECONDS (default 1: how often a running search reads its cancel flag),
  LFL_VISIBILITY_TIMEOUT (default 7 days: how long an unacknowledged search stays reserved),
  LFL_LOGIN_FAILURE_LIMIT (default 5) failed sign-ins for one username or from one address lock
  both out for LFL_LOGIN_COOLOFF_MINUTES (default 15); LFL_TRUSTED_PROXIES (default 0): reverse
  proxies in front of the web server, whose X-Forwarded-For gives the address sign-ins are counted for.
- One search over many workers: LFL_EVALUATION_QUEUE (default lfl.evaluation), LFL_CHUNK_LEASE_SECONDS
  (default 60), LFL_SWEEP_SECONDS (default 5: the coordinator's period), LFL_CHUNK_DISPATCH ("celery",
  the default, or "inline"), LFL_WORKER_MAX_TASKS_PER_CHILD (default 0: worker processes are kept).
"""

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url

from lfl_web.env import development_secret_key, env_bool, env_list, env_number
from lfl_web.layers import MEMORY_LAYER, redis_channel_layer

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("LFL_VAR_DIR") or BASE_DIR / "var").resolve()

SECRET_KEY = os.environ.get("LFL_SECRET_KEY") or development_secret_key(VAR_DIR)
DEBUG = env_bool("LFL_DEBUG", False)
ALLOWED_HOSTS = env_list("LFL_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("LFL_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves ASGI (websockets) in development
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",  # sign-in throttling (see lfl_web/signin.py)
    "ninja",  # the API docs page (/api/docs) serves its Swagger UI files from here, not from a CDN
    "lfl_web.experiments",
    "lfl_web.stack",
    "lfl_web.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out sign-in into lfl_web.signin.locked_out
]

ROOT_URLCONF = "lfl_web.urls"
ASGI_APPLICATION = "lfl_web.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --------------------------------------------------------------------------- database

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("LFL_TEST_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # The web process reads while a worker writes: WAL lets readers go on, IMMEDIATE takes the
        # write lock up front instead of failing halfway, and the timeout waits for a busy writer.
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }
    # A file (not :memory:) so that a Celery worker started by a test can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"lfl-test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --------------------------------------------------------------------------- signing in

# Axes counts failed sign-ins (in the database, so every web process sees them) and refuses a
# username or an address that reached the limit, until the cool-off has passed since its last try.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(env_number("LFL_LOGIN_FAILURE_LIMIT", 5))
if AXES_FAILURE_LIMIT < 1:
    raise ValueError(f"LFL_LOGIN_FAILURE_LIMIT must be at least 1, got {AXES_FAILURE_LIMIT}")
AXES_COOLOFF_TIME = timedelta(minutes=env_number("LFL_LOGIN_COOLOFF_MINUTES", 15))
if AXES_COOLOFF_TIME <= timedelta(0):
    raise ValueError("LFL_LOGIN_COOLOFF_MINUTES must be more than 0")
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one reaching the limit locks
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "lfl_web.signin.locked_out"
# Reverse proxies in front of the web server (each appends to X-Forwarded-For); 0: reached directly.
LFL_TRUSTED_PROXIES = int(env_number("LFL_TRUSTED_PROXIES", 0))
if LFL_TRUSTED_PROXIES < 0:
    raise ValueError(f"LFL_TRUSTED_PROXIES must be 0 or more, got {LFL_TRUSTED_PROXIES}")
AXES_CLIENT_IP_CALLABLE = "lfl_web.signin.client_address"
AXES_DISABLE_ACCESS_LOG = True  # failures are what it is for; no row for every successful sign-in
AXES_VERBOSE = False

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STATIC_ROOT = VAR_DIR / "static"
LFL_SERVE_STATIC = env_bool("LFL_SERVE_STATIC", True)

# --------------------------------------------------------------------------- Redis, Celery, Channels

REDIS_URL = os.environ.get("REDIS_URL", "")

# Without Redis, tasks and results stay in this process: nothing hangs retrying a missing server.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True  # a search lost with its worker is delivered again (and resumes)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a worker holds only the search it is running
CELERY_TASK_TRACK_STARTED = True
# A search keeps running when the broker connection drops (its progress goes to the database); Celery 6
# would cancel it by default, and the message, already taken, would never come back.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# A worker process stays for many chunks (it keeps the search's data and evaluator between them, and
# empties the GPU cache when it moves to another search); set a number to recycle processes.
CELERY_WORKER_MAX_TASKS_PER_CHILD = int(env_number("LFL_WORKER_MAX_TASKS_PER_CHILD", 0)) or None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A search runs for hours: Redis must not hand it to a second worker while the first still runs it.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(env_number("LFL_VISIBILITY_TIMEOUT", 7 * 24 * 3600))}

_CHANNEL_LAYER = os.environ.get("LFL_CHANNEL_LAYER") or ("redis" if REDIS_URL else "memory")
if _CHANNEL_LAYER == "redis":
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL or "redis://127.0.0.1:6379/0")}
elif _CHANNEL_LAYER == "memory":
    CHANNEL_LAYERS = {"default": MEMORY_LAYER}
else:
    raise ValueError(f"LFL_CHANNEL_LAYER must be 'redis' or 'memory', got {_CHANNEL_LAYER!r}")

# --------------------------------------------------------------------------- searches

LFL_CHECKPOINT_DIR = VAR_DIR / "checkpoints"
# Folders on the server that experiments may read datasets from (task.data_root / task.data_file),
# separated by os.pathsep; uploads are always allowed. Anything else is refused, so a user cannot
# make the server open arbitrary paths.
LFL_DATA_DIRS = [
    Path(p).resolve() for p in (os.environ.get("LFL_DATA_DIRS") or str(BASE_DIR / "data")).split(os.pathsep) if p
]
LFL_CANCEL_POLL_SECONDS = env_number("LFL_CANCEL_POLL_SECONDS", 1.0)
# One search over many workers (experiments.fanout): the queue chunks go to, how long a worker's claim
# on a chunk lasts without renewal (it renews every third of it; a lost worker's chunk is sent again
# after it runs out), how often the coordinator sweeps, and "celery" or "inline" (chunks evaluated in
# the process that made them, one after another: no broker needed).
LFL_EVALUATION_QUEUE = os.environ.get("LFL_EVALUATION_QUEUE") or "lfl.evaluation"
LFL_CHUNK_LEASE_SECONDS = env_number("LFL_CHUNK_LEASE_SECONDS", 60.0)
LFL_SWEEP_SECONDS = env_number("LFL_SWEEP_SECONDS", 5.0)
LFL_CHUNK_DISPATCH = os.environ.get("LFL_CHUNK_DISPATCH") or "celery"
if LFL_CHUNK_DISPATCH not in ("celery", "inline"):
    raise ValueError(f"LFL_CHUNK_DISPATCH must be 'celery' or 'inline', got {LFL_CHUNK_DISPATCH!r}")
# The most training steps one configuration may ask for (search_engine.limits.work_estimate's total_steps;
# 2e9 is ~800x EvoMAL's MNIST preset); 0 turns the ceiling off.
LFL_MAX_TRAINING_STEPS = int(env_number("LFL_MAX_TRAINING_STEPS", 2e9))
# Queued + running experiments one user (staff too) may have at once, so that nobody fills the
# shared queue; 0: no limit.
LFL_MAX_QUEUED_PER_USER = int(env_number("LFL_MAX_QUEUED_PER_USER", 5))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"without_traceback": {"()": "lfl_web.log_filters.WithoutTraceback"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "one_line": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["without_traceback"]},
    },
    "loggers": {
        # A foreign Host header is refused with a 400 page: one line in the log, not a traceback.
        "django.security.DisallowedHost": {"handlers": ["one_line"], "level": "ERROR", "propagate": False},
        "lfl_web": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # With DEBUG off Django prints nothing of a 500; its traceback belongs in the server's log.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
