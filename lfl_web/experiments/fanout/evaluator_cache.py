"""The task and evaluator a worker process keeps for the search it is working on.

Consecutive chunks of one search skip loading the data and choosing the evaluator again; moving
to another search drops them (and empties the GPU cache). Imports torch only when first asked.
"""

from __future__ import annotations

import json
import sys

_cached: dict = {}


def evaluator_for(experiment_id: int, config, saved_plan: dict | None):
    """(task, evaluator) for this search, built once per process and search (the last one kept).

    `saved_plan` is the search's plan record (None when it is being chosen, at the start): the kept
    evaluator is reused when it follows that plan.
    """
    from search_engine.facade import load_task, method_named

    key = (experiment_id, json.dumps(config.to_dict(), sort_keys=True))
    if _cached.get("key") != key or saved_plan not in (None, _cached.get("plan")):
        forget_evaluator()
        method = method_named(config.method)
        task = load_task(config)
        evaluator = method.make_evaluator(task, config, saved_plan=saved_plan)
        chosen = method.plan_record(evaluator, task.device) if saved_plan is None else saved_plan
        _cached.update(key=key, value=(task, evaluator), plan=chosen)
    return _cached["value"]


def forget_evaluator() -> None:
    """Drop the kept task and evaluator (and the GPU memory they held)."""
    _cached.clear()
    _release_device_memory()


def _release_device_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
