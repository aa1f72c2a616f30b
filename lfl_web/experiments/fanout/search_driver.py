"""One search over any number of workers, for every method: the web driver of the engine's steps.

The database is the record; the broker only carries work. The method (`search_engine.study`'s
`Method`, by the experiment's `method`) says what a generation's work is; a search moves through
these steps:

1. `start` (the experiment's own task): load the data, choose the evaluation plan, train the
   baseline, open generation 0, store the state (`StoredSearch`) and the phase's work as chunks
   (`Chunk`, one per evaluator call, formed from the state alone), then send one message per chunk
   and return: no worker slot is held while others work.
2. `chunk_worker.run_chunk` (any worker): claim a chunk under a lease, evaluate it, store its outcomes
   (first writer wins, so a redelivered chunk changes nothing stored), then call `advance`.
3. `advance` (whoever finished a chunk, or the coordinator's sweep): under the state row's lock,
   apply every stored outcome (idempotent), record the events now complete, and once a phase's
   work is all in, store the next phase's chunks (EvoMAL's "top_k" refinements), or finish the
   generation, open the next one and store its chunks; or finish the search.

Because chunk membership depends on the state alone and outcomes on the chunk alone, the history
equals `search_engine.run_search`'s whatever the number of workers, the order chunks finish in,
or the redeliveries: EvoMAL's and GP-LFL's candidates, TaylorGLO's CMA-ES proposals and ML3's
blocks of meta steps (whose weights and optimizer state travel in the chunk) alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from lfl_web.experiments import services
from lfl_web.experiments.fanout import dispatch
from lfl_web.experiments.live.recording import SAVERS, broadcast_status, json_ready, publish
from lfl_web.experiments.models import Chunk, Experiment, StoredSearch

logger = logging.getLogger(__name__)


def method_of(config: dict):
    """The engine's method object for a stored configuration."""
    from search_engine.facade import method_named

    return method_named((config or {}).get("method", "evomal"))


def search_config(experiment: Experiment):
    """The experiment's configuration as its method runs it (GP-LFL: local search off)."""
    from search_engine.facade import load_config

    return method_of(experiment.config).settings(load_config(experiment.config, check_data=False))


# ----------------------------------------------------------------------------- 1. start


def start(experiment: Experiment, *, resume_file=None) -> None:
    """Prepare the search and send generation 0's chunks (see the module docstring). A second call
    for a search already stored only sends again what is pending. `resume_file`: a checkpoint of
    the one-task search written before this experiment fanned out, continued from."""
    if StoredSearch.objects.filter(experiment=experiment).exists():
        dispatch.send_pending(experiment.pk)
        advance(experiment.pk)
        return
    from lfl_web.experiments.fanout.cancel_poll import CancelPoll
    from lfl_web.experiments.fanout.evaluator_cache import evaluator_for
    from search_engine.facade import interrupt, search_started

    method, config = method_of(experiment.config), search_config(experiment)
    try:
        with interrupt.watching(CancelPoll(experiment.pk)):
            task, evaluator = evaluator_for(experiment.pk, config, saved_plan=None)
            state, config = _resumed(method, config, resume_file)
            state = state or method.fresh_state(config, task.kind, method.baseline_fitness(task, config, evaluator))
    except interrupt.Stopped:  # while preparing: nothing was found
        services.end_cancelled(experiment=experiment)
        return
    state.plan = method.plan_record(evaluator, task.device)
    step = Step(experiment.pk, events=[search_started(method, config, state, task.kind)])
    with transaction.atomic():
        step.run_on(state)
        step.save_events()
        StoredSearch.objects.create(experiment_id=experiment.pk, state=method.state_to_dict(state),
                                    generation=method.next_generation(state))
    step.after_commit()


def _resumed(method, config, path):
    """(the state of a one-task checkpoint at `path` for this configuration, or None; the configuration)."""
    if path is None or not path.exists():
        return None, config
    from search_engine.facade import FileStorage

    return FileStorage(path, method).resume(config)


# ----------------------------------------------------------------------------- 3. advance


def advance(experiment_id: int) -> str | None:
    """Move the search on as far as its stored outcomes allow; returns "completed" or "stopped"
    when this call finished it, else None (a completed search's meta-test is sent: Step.after_commit).

    Safe to call any number of times from any process: the state row is locked while it is read
    and written, and outcomes already applied are not applied again.
    """
    with transaction.atomic():
        stored = StoredSearch.objects.select_for_update().filter(experiment_id=experiment_id).first()
        experiment = Experiment.objects.filter(pk=experiment_id).first()
        if stored is None or experiment is None or experiment.is_finished:
            return None
        method = method_of(experiment.config)
        state = method.state_from_dict(stored.state)
        step = Step(experiment_id, generation_started=stored.generation_started)
        step.run_on(state, stop=experiment.cancel_requested)
        if not step.changed:
            return None
        stored.state = method.state_to_dict(state)
        if stored.generation != method.next_generation(state):
            stored.generation, stored.generation_started = method.next_generation(state), timezone.now()
        stored.save()
        step.save_events()
    step.after_commit()
    return step.finished


@dataclass
class Step:
    """What one `start` or `advance` did to a search: events to record, chunks to send, an end."""

    experiment_id: int
    events: list = field(default_factory=list)
    new_chunks: list[int] = field(default_factory=list)
    finished: str | None = None  # "completed" / "stopped" when the search ended here
    generation_started: object = None
    changed: bool = False

    def run_on(self, state, stop: bool = False) -> None:
        """Go through every step the stored outcomes complete (the engine's `advance`, with the
        chunks' rows as what is known), store the chunks of the work it opens, or finish."""
        from search_engine.facade import Known, advance

        method = method_of(state.config)

        def known(generation: int, phase: str) -> Known:
            stored = list(Chunk.objects.of_step(self.experiment_id, generation, phase))
            return Known(_outcomes(method, (c for c in stored if c.is_finished)), bool(stored),
                         all(c.is_finished for c in stored))

        def seconds() -> float:
            return (timezone.now() - self.generation_started).total_seconds() if self.generation_started else 0.0

        def new_generation() -> None:
            self.generation_started = timezone.now()

        step = advance(method, state, known, _chunk_size(state), stop=stop, seconds=seconds,
                       new_generation=new_generation)
        self.events += step.events
        self.changed |= step.changed
        for generation, phase, groups in step.opened:
            self.add_chunks(method, generation, phase, groups)
        if step.finished:
            self.finish(state, step.finished)

    def add_chunks(self, method, generation: int, phase: str, groups) -> None:
        for number, group in enumerate(groups):
            chunk = Chunk.objects.create(
                experiment_id=self.experiment_id, generation=generation, phase=phase, number=number,
                items=[method.item_to_dict(item) for item in group])
            self.new_chunks.append(chunk.pk)
        self.changed = True

    def finish(self, state, status: str) -> None:
        from search_engine.facade import finished_event

        self.events.append(finished_event(state, status))
        self.finished, self.changed = status, True

    def save_events(self) -> None:
        """Save every event's rows (inside the caller's transaction, with the state)."""
        self.events = [json_ready(e.to_dict() if hasattr(e, "to_dict") else dict(e)) for e in self.events]
        for data in self.events:
            SAVERS[data["type"]](self.experiment_id, data)

    def after_commit(self) -> None:
        """Tell the watchers, then send the new chunks (their rows are committed now)."""
        for data in self.events:
            publish(self.experiment_id, data)
            if data["type"] == "search_finished":
                broadcast_status(self.experiment_id)
        dispatch.send_chunks(self.new_chunks)
        if self.finished == "completed":
            dispatch.send_meta_test(self.experiment_id)


def _chunk_size(state) -> int:
    """The plan's chunk size, read from the stored plan record (every worker builds the same)."""
    plan = state.plan or {}
    return int(plan.get("chunk") or 1) if plan.get("strategy") == "batched" else 1


def _outcomes(method, finished_chunks) -> dict:
    """{item index: outcome} of stored chunks."""
    return {method.item_index(method.item_from_dict(item)): method.outcome_from_dict(o)
            for chunk in finished_chunks for item, o in zip(chunk.items, chunk.outcomes or [], strict=True)}
