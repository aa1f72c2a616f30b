"""The Celery application. Importing it never imports torch; a worker does, before it takes tasks.

A worker loads the numeric stack (torch, the engine's evaluators, SymPy) before its first task, so
the first chunk of a search does not wait for those imports. With the prefork pool the parent
imports it just before it forks each pool process: the children inherit the loaded modules and
report ready at once. Imported in each child instead, the imports (5 to 10 s on 2 busy cores)
outlast Celery's limit for a new pool process to report ready (worker_proc_alive_timeout, 4 s),
so a replaced pool process was killed and forked again for minutes. The parent only imports: it
runs no torch operation and touches no CUDA, so each child starts its own thread pools and its
own CUDA context. The solo and threads pools load it in the worker itself once it is ready. A web
process that imports this module is unaffected.
"""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lfl_web.settings")

app = Celery("lfl_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def warm_up() -> None:
    """Import what evaluating a chunk needs (no CUDA call, no torch operation: safe before a fork)."""
    from search_engine.facade import preload_numeric_stack

    preload_numeric_stack()


@signals.worker_before_create_process.connect
def _warm_up_before_forking(**_kwargs) -> None:
    # Sent in the prefork parent before every fork; only the first call imports anything.
    warm_up()


@signals.worker_ready.connect
def _warm_up_worker(sender=None, **_kwargs) -> None:
    pool = getattr(getattr(sender, "controller", None), "pool_cls", None)
    if pool is not None and "prefork" not in getattr(pool, "__module__", ""):
        warm_up()
