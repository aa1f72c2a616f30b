"""The task queue as the web side uses it: put a search on it, bounded in time, never waiting on a result.

The broker (Redis) only carries work; the database is the record. So a message carries only the
experiment's pk, and no result is stored for it: nothing waits on one (the row says how the search
went), and a request that subscribed to a result store on a dead Redis hung for about 20 s of
reconnects before it failed. A publish gives up within a few seconds when the broker is down or
silent, so that a web request answers quickly and truthfully instead.
"""

from __future__ import annotations

from celery.utils import uuid
from kombu.exceptions import OperationalError

from lfl_web.celery import app as celery_app

#: The Celery task that runs a search (tasks.py). Sent by name: tasks.py imports the services.
RUN_EXPERIMENT = "experiments.run_experiment"

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
    """The task queue did not take a search: the broker is down or does not answer."""


def broker_connection(url: str | None = None):
    """A fresh connection for sending to the broker at `url` (default: the configured one), with
    bounded socket waits; use it as a context manager."""
    return celery_app.connection_for_write(url, transport_options=TRANSPORT_OPTIONS)


def publish_search(pk: int, *, connection, task_id: str | None = None) -> str:
    """Put the search of experiment `pk` on the queue through `connection`; returns its task id.

    Raises QueueUnavailable when the broker does not take it within a few seconds.
    """
    task_id = task_id or uuid()
    try:
        celery_app.send_task(RUN_EXPERIMENT, args=(pk,), task_id=task_id, connection=connection,
                             ignore_result=True, retry=True, retry_policy=RETRY_POLICY)
    except BROKER_ERRORS as exc:
        raise QueueUnavailable(f"the task queue did not take experiment {pk}: {exc}") from exc
    return task_id
