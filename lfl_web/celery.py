"""The Celery application. Importing it never imports torch; a worker does, once it is ready.

A worker loads the numeric stack (torch, the engine's evaluators, SymPy) as soon as it can take
tasks, so its first chunk of a search does not wait for those imports: in each pool process for
the prefork pool (after the fork, so the parent never holds torch's state), in the worker itself
for the solo and threads pools. A web process that imports this module is unaffected.
"""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lfl_web.settings")

app = Celery("lfl_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def warm_up() -> None:
    import search_engine.evolution.steps  # noqa: F401 (SymPy, the operators)
    import search_engine.scoring.plan  # noqa: F401 (torch, the evaluators)
    import search_engine.tasks.task  # noqa: F401 (datasets, networks)


@signals.worker_process_init.connect
def _warm_up_pool_process(**_kwargs) -> None:
    warm_up()


@signals.worker_ready.connect
def _warm_up_worker(sender=None, **_kwargs) -> None:
    pool = getattr(getattr(sender, "controller", None), "pool_cls", None)
    if pool is not None and "prefork" not in getattr(pool, "__module__", ""):
        warm_up()
