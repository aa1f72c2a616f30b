"""A fanned-out search's history against the single-process `run_search` of the same configuration."""

from __future__ import annotations

import json

from lfl_web.experiments.models import StoredSearch


def without_seconds(value):
    """JSON data with every wall-clock "seconds" removed (all that may differ between two runs)."""
    if isinstance(value, dict):
        return {k: without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_seconds(v) for v in value]
    return value


def reference_history(config: dict) -> list[dict]:
    """The single-process search's history as JSON (lists, not tuples), without seconds (computed on
    the configuration's `evaluation.threads`, as every worker does)."""
    from search_engine.config import load_config
    from search_engine.study.driver import run_search

    result = run_search(load_config(config))
    return without_seconds(json.loads(json.dumps([g.to_dict() for g in result.history])))


def stored_history(experiment) -> list[dict]:
    """The history kept in the database for a fanned-out search, without seconds."""
    return without_seconds(StoredSearch.objects.get(experiment=experiment).state["history"])
