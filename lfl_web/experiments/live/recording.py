"""From a search event to the database, then to the browsers watching the experiment.

The database is the record; the channel layer only carries news. So every event is saved first (in
one transaction, idempotently: a redelivered search that resumes from its checkpoint repeats some
events) and then sent to the group `experiment_<id>` as one message type, UPDATE_MESSAGE, that
carries the panels the event changed, rendered from the database once for all watchers
(lfl_web.experiments.results.dashboard). A failed announcement is logged, never fatal.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from redis.exceptions import RedisError

from lfl_web.experiments.models import Candidate, Experiment, Generation, Status
from lfl_web.experiments.results.dashboard import update_message

logger = logging.getLogger(__name__)

#: The channel message type of every experiment event (ExperimentConsumer.experiment_update).
UPDATE_MESSAGE = "experiment.update"
#: The event type of a change to the experiment's row (status, cancel request, error, meta-test state).
STATUS_EVENT = "experiment_status"


def group_name(experiment_id: int) -> str:
    return f"experiment_{experiment_id}"


def json_ready(value: Any) -> Any:
    """Plain JSON data: tuples become lists, NaN and infinities become None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def record_event(experiment_id: int, event) -> dict:
    """Save a search event (an events.Event or its dict) for `experiment_id`, then announce it.

    Returns the message as sent to the group (the event with its rendered panels), or the bare
    JSON-ready event when nothing was sent.
    """
    data = json_ready(event.to_dict() if hasattr(event, "to_dict") else dict(event))
    save = SAVERS.get(data.get("type"))
    if save is None:  # an engine newer than this web layer: never break a running search over it
        logger.warning("experiment %s: ignoring unknown search event type %r", experiment_id, data.get("type"))
        return data
    with transaction.atomic():
        save(experiment_id, data)
    sent = publish(experiment_id, data)
    if data["type"] == "search_finished":
        broadcast_status(experiment_id)
    return sent or data


def broadcast_status(experiment_id: int) -> None:
    """Tell the watchers the experiment's current row, with the panels that depend on it (after a
    status change, a cancel request or a meta-test failure)."""
    experiment = Experiment.objects.select_related("owner").filter(pk=experiment_id).first()
    if experiment is None:
        return
    publish(experiment_id, {"type": STATUS_EVENT, "experiment": experiment.state_dict()}, experiment)


def publish(experiment_id: int, event: dict, experiment: Experiment | None = None) -> dict | None:
    """Send `event` (JSON-ready, with a `type`) to the experiment's watchers with the panels it changed.

    Returns the message sent, or None when the experiment is gone or the announcement failed: the
    row is saved either way, and a browser catches up from it on reconnect.
    """
    try:
        message = update_message(experiment or experiment_id, event)
        if message is not None:
            layer = get_channel_layer()
            async_to_sync(layer.group_send)(group_name(experiment_id), {"type": UPDATE_MESSAGE, "event": message})
        return message
    except (ConnectionError, OSError, RedisError) as exc:  # the channel layer is down: one line, not a traceback
        logger.warning("could not announce %s for experiment %s: %s", event["type"], experiment_id, exc)
        return None
    except Exception:  # never break a running search over its news
        logger.warning("could not announce %s for experiment %s", event["type"], experiment_id, exc_info=True)
        return None


# ----------------------------------------------------------------------------- one saver per event type


def save_search_started(experiment_id: int, data: dict) -> None:
    Experiment.objects.filter(pk=experiment_id).update(
        total_generations=data["generations"], current_generation=data["start_generation"],
        baseline_loss=data["baseline_loss"], baseline_fitness=data["baseline_fitness"],
        evaluation_plan=data.get("plan"),
    )


def save_candidate(experiment_id: int, data: dict) -> None:
    Candidate.objects.update_or_create(
        experiment_id=experiment_id, generation=data["generation"], index=data["index"],
        defaults={
            "expression": data["expression"], "canonical_key": data["canonical_key"], "latex": data["latex"],
            "fitness": data["fitness"], "rejection_reason": data["rejection_reason"] or "",
            "cache_hit": data["cache_hit"], "weights": data.get("weights"),
        },
    )


def save_refinement(experiment_id: int, data: dict) -> None:
    """Local search refined a candidate: the search keeps the refined loss only if it is no worse."""
    rows = Candidate.objects.filter(
        experiment_id=experiment_id, generation=data["generation"], canonical_key=data["canonical_key"]
    )
    rows.update(symbolic_fitness=data["symbolic_fitness"])
    refined, before = data["fitness"], data["symbolic_fitness"]
    if refined is not None and (before is None or refined <= before):
        rows.update(fitness=refined, weights=data["weights"])


def save_generation(experiment_id: int, data: dict) -> None:
    Generation.objects.update_or_create(
        experiment_id=experiment_id, index=data["generation"],
        defaults={
            "best_fitness": data["best_fitness"], "mean_fitness": data["mean_fitness"],
            "median_fitness": data["median_fitness"], "evaluated": data["evaluated"], "rejected": data["rejected"],
            "cache_hits": data["cache_hits"], "best_expression": data["best_expression"] or "",
            "best_latex": data["best_latex"] or "", "hall_of_fame": data["hall_of_fame"], "seconds": data["seconds"],
        },
    )
    Experiment.objects.filter(pk=experiment_id).update(current_generation=data["generation"] + 1)


def save_search_finished(experiment_id: int, data: dict) -> None:
    status = Status.SUCCEEDED if data["status"] == "completed" else Status.CANCELLED
    Experiment.objects.get(pk=experiment_id).mark_finished(status, best=data.get("best"))


SAVERS = {
    "search_started": save_search_started,
    "candidate_evaluated": save_candidate,
    "candidate_refined": save_refinement,
    "generation_finished": save_generation,
    "search_finished": save_search_finished,
}
