"""`Method`: what a loss-learning method tells the driver, and the lookup of a configuration's method.

A method is a strategy object. The driver (`study.driver`) owns everything every method does
alike - loading the task, the stop request, resuming, the baseline, the events, checkpoints and
the result - and asks the method only what is its own:

    settings(config)                 the configuration as the method runs it (GP-LFL: local search off)
    generation_count(stored)         how many generations (GenerationFinished events) a run of a stored
                                     (JSON) configuration makes; generations(config) for a loaded one
    planned_work(config)             the training work a configuration asks of it, at most (`WorkCounts`;
                                     limits.work_estimate adds what every method shares)
    step_labels()                    what a page calls each kind of step it does (the others are 0 for it)
    network_weight_count(stored)     the weights of its loss network, None where its losses are expressions
    make_evaluator / plan_record     what scores its work, and how that was chosen
    fresh_state(config, kind, b)     generation 0 (b: the baseline loss's fitness, scored by the driver)
    phases                           the kinds of work inside one generation, in order
    work(state, phase, chunk_size)   the groups of work items that phase still needs (one evaluator
                                     call each); the group's members depend on the state alone
    evaluate(evaluator, phase, items)    the outcomes of one group (runs wherever the work runs)
    apply(state, phase, outcomes)    outcomes by item index in; the events they complete out
    finish_generation / breed        the generation's summary, then the next generation

These first four are read by pages and the form, so a method's module imports without torch (its
training code lives in modules it imports only when it runs). Work items and outcomes cross process boundaries as JSON (`item_to_dict`, `outcome_to_dict`,
...), the state too (`state_to_dict`, `state_from_dict`), so a driver that hands groups to other
processes (the web's workers) runs the very steps the single-process driver runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, NamedTuple

from search_engine import catalog

#: What each kind of step of a work estimate (limits.work_estimate's keys) is called on a page.
STEP_LABELS: dict[str, str] = {"fitness_steps": "fitness", "rejection_steps": "rejection",
                               "local_search_steps": "local search", "meta_test_steps": "meta-test"}


class WorkCounts(NamedTuple):
    """The training work of one run of a method, at most (see limits.work_estimate for each count's meaning)."""

    candidates: int  # losses scored by a fitness training
    refitted: int  # fitness trainings again after a refinement
    screened: int  # candidates put through the rejection screen
    unrolled: int  # unrolled training steps of meta-gradients
    meta_test_runs: int  # meta-test trainings at the search's rate

#: method name -> "module:attribute" of its strategy object: the catalogue row says it.
METHODS: dict[str, str] = {name: m.strategy for name, m in catalog.METHODS.items()}


def generation_count(config: dict) -> int:
    """How many generations a run of a stored (JSON) configuration makes, as its method counts them."""
    return method_named(config.get("method", "evomal")).generation_count(config)


def network_weight_count(config: dict) -> int | None:
    """How many weights the loss network of a stored configuration has; None for expression losses."""
    return method_named(config.get("method", "evomal")).network_weight_count(config)


def method_named(name: str) -> Method:
    """The strategy object of method `name` (KeyError naming the known ones otherwise)."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    module, attribute = METHODS[name].split(":")
    return getattr(import_module(module), attribute)


class Method:
    """The defaults every method shares; a method overrides what is its own (see the module docstring)."""

    name: str = ""
    phases: tuple[str, ...] = ("evaluate",)
    #: (section, field) a resume may raise to extend a finished run.
    extendable: tuple[str, str] = ("search", "generations")

    def settings(self, config):
        return config

    def generations(self, config) -> int:
        return self.generation_count(config.to_dict())

    def generation_count(self, stored: dict) -> int:
        """Generations of a run of the stored configuration `stored` (GP generations by default)."""
        from search_engine.config import SearchSettings

        return int(stored.get("search", {}).get("generations", SearchSettings.generations))

    def planned_work(self, config) -> WorkCounts:
        raise NotImplementedError

    def step_labels(self) -> dict[str, str]:
        return dict(STEP_LABELS)

    def network_weight_count(self, stored: dict) -> int | None:
        return None

    def population_size(self, config) -> int:
        return config.search.population_size

    def make_evaluator(self, task, config, saved_plan: dict | None):
        from search_engine.scoring.plan import make_evaluator

        return make_evaluator(task, config, saved_plan=saved_plan)

    def plan_record(self, evaluator, device) -> dict:
        from search_engine.scoring.plan import plan_record

        return plan_record(evaluator, device)

    def baseline_fitness(self, task, config, evaluator) -> float | None:
        """The baseline loss's fitness, scored exactly as every candidate is."""
        from search_engine.expr.tree import KNOWN_LOSSES

        return evaluator.fitness(KNOWN_LOSSES[catalog.baseline_name(task.kind)]).fitness

    def check_resumable(self, state, config) -> None:
        """Raise CheckpointError when `state` cannot continue under `config` beyond the settings check."""

    def open_generation(self, state) -> None:
        """Prepare the current generation's proposals in the state (idempotent)."""

    def breed(self, state) -> None:
        """Move a finished generation's state on to the next generation's."""

    # The steps each method implements.
    def fresh_state(self, config, kind: str, baseline_fitness: float | None): raise NotImplementedError
    def state_to_dict(self, state) -> dict[str, Any]: raise NotImplementedError
    def state_from_dict(self, data: dict[str, Any]): raise NotImplementedError
    def next_generation(self, state) -> int: raise NotImplementedError
    def is_finished(self, state) -> bool: raise NotImplementedError
    def work(self, state, phase: str, chunk_size: int) -> list[list[Any]]: raise NotImplementedError
    def evaluate(self, evaluator, phase: str, items: list[Any]) -> list[Any]: raise NotImplementedError
    def apply(self, state, phase: str, outcomes: dict[int, Any]) -> list: raise NotImplementedError
    def finish_generation(self, state, seconds: float): raise NotImplementedError
    def item_to_dict(self, item) -> dict: raise NotImplementedError
    def item_from_dict(self, data: dict): raise NotImplementedError

    # Work items carry their `index`; outcomes are the evaluators' `Outcome`s unless a method says otherwise.
    def item_index(self, item) -> int:
        return item.index

    def outcome_to_dict(self, outcome) -> dict:
        from search_engine.evolution.checkpoint import outcome_to_dict

        return outcome_to_dict(outcome)

    def outcome_from_dict(self, data: dict):
        from search_engine.evolution.checkpoint import outcome_from_dict

        return outcome_from_dict(data)

    def failed_outcome(self, reason: str) -> dict:
        """The stored outcome of an item whose evaluation raised (`reason` says what)."""
        return {"fitness": None, "reason": reason, "weights": None}
