"""The broker as the web side uses it: one function, `send`, puts every message on it, bounded in time.

The broker (Redis) only carries work; the database is the record. So a message carries only a
row's pk (an experiment, a chunk, a transfer), and no result is stored for it: nothing waits on one
(the row says how the work went), and a request that subscribed to a result store on a dead Redis
hung for about 20 s of reconnects before it failed. A send gives up within a few seconds when the
broker is down or silent, so that a web request answers quickly and truthfully instead.
"""

from __future__ import annotations

from celery.utils import uuid
from kombu.exceptions import OperationalError

from lfl_web.celery import app as celery_app

#: The Celery tasks (tasks.py), sent by name: tasks.py imports the modules that send them.
RUN_EXPERIMENT = "experiments.run_experiment"
EVALUATE_CHUNK = "experiments.evaluate_chunk"
RUN_TRANSFER = "experiments.run_transfer"
#: What each task's pk is the pk of, for the messages that say a send failed.
_ROWS = {RUN_EXPERIMENT: "experiment", EVALUATE_CHUNK: "chunk", RUN_TRANSFER: "transfer"}

#: Three attempts within about half a second, then give up (a restarted Redis is taken up by the
#: first retry; a dead one is not worth a longer wait: the caller says so instead).
RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.25, "interval_max": 0.25}
#: Each connect, and each reply, is waited on this long at most (redis-py would wait forever on a
#: broker that accepts connections but does not answer).
SOCKET_SECONDS = 2.0
TRANSPORT_OPTIONS = {"socket_connect_timeout": SOCKET_SECONDS, "socket_timeout": SOCKET_SECONDS}

#: What a broker that is down or silent raises through kombu (its own errors become OperationalError).
BROKER_ERRORS = (OperationalError, OSError)


class QueueUnavailable(Exception):
    """The task queue did not take a message: the broker is down or does not answer."""


def broker_connection(url: str | None = None):
    """A fresh connection for sending to the broker at `url` (default: the configured one), with
    bounded socket waits; use it as a context manager."""
    return celery_app.connection_for_write(url, transport_options=TRANSPORT_OPTIONS)


def send(task: str, pk: int, *, connection, task_id: str | None = None, queue: str | None = None) -> str:
    """Put Celery task `task` (a name above) for row `pk` on the broker through `connection`, on
    `queue` (default: the task's own); returns the message's task id.

    Raises QueueUnavailable when the broker does not take it within a few seconds.
    """
    task_id = task_id or uuid()
    routing = {"queue": queue} if queue else {}
    try:
        celery_app.send_task(task, args=(pk,), task_id=task_id, connection=connection, ignore_result=True,
                             retry=True, retry_policy=RETRY_POLICY, **routing)
    except BROKER_ERRORS as exc:
        raise QueueUnavailable(f"the task queue did not take {_ROWS.get(task, task)} {pk}: {exc}") from exc
    return task_id
