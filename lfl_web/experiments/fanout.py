"""One evolutionary search over any number of workers: the web driver of `evolution.steps`.

The database is the record; the broker only carries work. A search moves through these steps:

1. `start` (the experiment's own task): load the data, choose the evaluation plan, train the
   baseline, draw generation 0, store the state (`StoredSearch`) and the generation's chunks
   (`Chunk`, one per evaluator call, formed by population index from the plan alone), then send
   one message per chunk and return: no worker slot is held while others work.
2. `chunks.run_chunk` (any worker): claim a chunk under a lease, evaluate it, store its outcomes
   (first writer wins, so a redelivered chunk changes nothing stored), then call `advance`.
3. `advance` (whoever finished a chunk, or the coordinator's sweep): under the state row's lock,
   apply every stored outcome (idempotent: `steps.apply_outcomes`), record the candidate events
   now complete, and once the generation's work is all in, refine its best (mode "top_k": one
   chunk each), finish it, breed the next and store its chunks; or finish the search. The
   chunk that completes a generation moves the search on; nothing waits on anything.

Because chunk membership depends on the plan alone and outcomes on the chunk alone, the history
equals `run_search`'s whatever the number of workers, the order chunks finish in, or the
redeliveries. Only "evomal" and "gplfl" fan out; the other methods run in their task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from lfl_web.experiments import dispatch, services
from lfl_web.experiments.models import Chunk, Experiment, Phase, StoredSearch
from lfl_web.experiments.recording import SAVERS, broadcast_status, json_ready, publish

logger = logging.getLogger(__name__)

#: Methods whose generations are spread over workers (the evolutionary search's steps).
FAN_OUT_METHODS = ("evomal", "gplfl")


def fans_out(config: dict) -> bool:
    """Whether a stored configuration's search runs as chunks over workers."""
    return (config or {}).get("method", "evomal") in FAN_OUT_METHODS


def search_config(experiment: Experiment):
    """The experiment's configuration as its method runs it (GP-LFL: local search off)."""
    from search_engine.config import load_config
    from search_engine.methods.settings import effective

    return effective(load_config(experiment.config, check_data=False))


# ----------------------------------------------------------------------------- 1. start


def start(experiment: Experiment, *, resume_file=None) -> None:
    """Prepare the search and send generation 0's chunks (see the module docstring). A second call
    for a search already stored only sends again what is pending. `resume_file`: a checkpoint of
    the one-task search written before this experiment fanned out, continued from."""
    if StoredSearch.objects.filter(experiment=experiment).exists():
        dispatch.send_pending(experiment.pk)
        advance(experiment.pk)
        return
    from lfl_web.experiments.evaluators import evaluator_for
    from lfl_web.experiments.runner import CancelPoll
    from search_engine.evolution import steps
    from search_engine.evolution.events import SearchStarted
    from search_engine.runtime import interrupt

    config = search_config(experiment)
    try:
        with interrupt.watching(CancelPoll(experiment.pk)):
            task, evaluator = evaluator_for(experiment.pk, config, saved_plan=None)
            state = _resumed(config, resume_file) or steps.fresh_state(
                config, task.kind, evaluator.fitness(_baseline_tree(task.kind)).fitness)
    except interrupt.Stopped:  # while preparing: nothing was found
        services.end_cancelled(experiment=experiment)
        return
    from search_engine.scoring.plan import plan_record

    state.plan = plan_record(evaluator, task.device)
    started = SearchStarted(
        config=config.to_dict(), generations=config.search.generations,
        population_size=config.search.population_size, start_generation=state.next_generation,
        baseline_loss=steps.baseline_name(task.kind), baseline_fitness=state.baseline_fitness, plan=state.plan)
    step = Step(experiment.pk, events=[started])
    with transaction.atomic():
        step.save_events()
        step.open_generation(state, evaluator.chunk_size)
        if not step.new_chunks:  # every candidate of generation 0 is cached (a resumed checkpoint)
            step.run_on(state)
        StoredSearch.objects.create(experiment_id=experiment.pk, state=_to_dict(state),
                                    generation=state.next_generation)
    step.after_commit()


def _baseline_tree(kind: str):
    from search_engine.evolution.steps import baseline_name
    from search_engine.expr.tree import KNOWN_LOSSES

    return KNOWN_LOSSES[baseline_name(kind)]


def _resumed(config, path):
    """The state of a one-task checkpoint at `path` for this configuration, or None."""
    if path is None or not path.exists():
        return None
    from search_engine.config import load_config
    from search_engine.evolution.checkpoint import load
    from search_engine.evolution.loop import check_same_experiment

    state = load(path)
    check_same_experiment(load_config(state.config, check_data=False).to_dict(), config.to_dict())
    state.config = config.to_dict()
    return state


def _to_dict(state) -> dict:
    from search_engine.evolution.checkpoint import state_to_dict

    return state_to_dict(state)


# ----------------------------------------------------------------------------- 3. advance


def advance(experiment_id: int) -> str | None:
    """Move the search on as far as its stored outcomes allow; returns "completed" or "stopped"
    when this call finished it, else None (a completed search's meta-test is sent: Step.after_commit).

    Safe to call any number of times from any process: the state row is locked while it is read
    and written, and outcomes already applied are not applied again.
    """
    from search_engine.evolution.checkpoint import state_from_dict

    with transaction.atomic():
        stored = StoredSearch.objects.select_for_update().filter(experiment_id=experiment_id).first()
        experiment = Experiment.objects.filter(pk=experiment_id).first()
        if stored is None or experiment is None or experiment.is_finished:
            return None
        state = state_from_dict(stored.state)
        step = Step(experiment_id, generation_started=stored.generation_started)
        step.run_on(state, stop=experiment.cancel_requested)
        if not step.changed:
            return None
        stored.state = _to_dict(state)
        if stored.generation != state.next_generation:
            stored.generation, stored.generation_started = state.next_generation, timezone.now()
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
        """Apply stored outcomes and go through every step they complete (see `advance`)."""
        from search_engine.evolution import steps

        while not self.finished and not self.new_chunks:
            generation = state.next_generation
            refine = list(Chunk.objects.of_step(self.experiment_id, generation, Phase.REFINE))
            evaluate = list(Chunk.objects.of_step(self.experiment_id, generation, Phase.EVALUATE))
            before = len(self.events)
            self.events += steps.apply_outcomes(state, _outcomes(c for c in evaluate if c.is_finished))
            self.changed |= len(self.events) > before  # outcomes alone are in their chunks' rows already
            if stop:
                return self.finish(state, "stopped")
            if any(not c.is_finished for c in evaluate):
                return None
            if not refine and steps.refinement_work(state):
                self.add_chunks(state, Phase.REFINE, [[item] for item in steps.refinement_work(state)])
                return None
            self.events += steps.apply_refinements(state, _outcomes(c for c in refine if c.is_finished))
            if steps.refinement_work(state):  # refinements still out
                return None
            seconds = (timezone.now() - self.generation_started).total_seconds() if self.generation_started else 0.0
            self.events.append(steps.finish_generation(state, seconds))
            self.changed = True
            if steps.is_finished(state):
                return self.finish(state, "completed")
            steps.breed(state)
            self.generation_started = timezone.now()
            self.open_generation(state, _chunk_size(state))
        return None

    def open_generation(self, state, chunk_size: int) -> None:
        """Store the current generation's chunks (none if every candidate is cached)."""
        from search_engine.evolution import steps

        self.add_chunks(state, Phase.EVALUATE, steps.chunks(steps.pending_work(state), chunk_size))

    def add_chunks(self, state, phase: str, groups) -> None:
        for number, group in enumerate(groups):
            chunk = Chunk.objects.create(
                experiment_id=self.experiment_id, generation=state.next_generation, phase=phase, number=number,
                items=[item.to_dict() for item in group])
            self.new_chunks.append(chunk.pk)
        self.changed = True

    def finish(self, state, status: str) -> None:
        from search_engine.evolution.events import SearchFinished

        best = state.hall_of_fame[0] if state.hall_of_fame else None
        self.events.append(SearchFinished(status=status, generations_completed=len(state.history), best=best,
                                          **state.totals))
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
        dispatch.send(self.new_chunks)
        if self.finished == "completed":
            dispatch.send_meta_test(self.experiment_id)


def _chunk_size(state) -> int:
    """The plan's chunk size, read from the stored plan record (every worker builds the same)."""
    plan = state.plan or {}
    return int(plan.get("chunk") or 1) if plan.get("strategy") == "batched" else 1


def _outcomes(finished_chunks) -> dict:
    """{population index: Outcome} of stored chunks."""
    from search_engine.evolution.checkpoint import outcome_from_dict

    return {item["index"]: outcome_from_dict(o)
            for chunk in finished_chunks for item, o in zip(chunk.items, chunk.outcomes or [], strict=True)}

