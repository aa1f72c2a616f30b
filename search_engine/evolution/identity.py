"""One loss, one entry: when two candidates of a search are the same loss for its task.

A candidate's cache key is its canonical form for the task (`expr.symbolic`: for classification y
is one-hot and f a softmax output, so sign(y) and y are one loss); a candidate whose form is not
cached but whose gradient on the probe batch is that of a cached or earlier candidate
(`expr.gradient_probe`; up to a positive factor under the tuned protocol, whose fitness trains
c * L exactly as L) takes that one's key. The hall of fame holds no two entries that are one loss.
"""

from __future__ import annotations

from search_engine import catalog
from search_engine.evolution.checkpoint import SearchState
from search_engine.evolution.events import HallOfFameEntry
from search_engine.expr.gradient_probe import gradient_signature
from search_engine.expr.symbolic import canonical_key
from search_engine.expr.tree import Node, parse


def task_kind(state: SearchState) -> str:
    """The kind of task the search learns a loss for, read off its configuration."""
    task = state.config["task"]
    return catalog.dataset_kind(task["dataset"], task.get("kind") or "classification")


def population_keys(state: SearchState) -> list[str]:
    """The cache key of every candidate of the current population, in population order.

    A candidate takes the key of the first candidate with its canonical form for the task; if that
    is the first such and its form is not cached, the key stored for its gradient signature
    (`state.signatures`) or of the first earlier candidate with the same signature; otherwise its
    own form. So the key depends only on the population, the cache and the signatures when the
    generation began: storing the generation's outcomes (under the keys of its first occurrences)
    changes no key. Canonical forms and signatures are memoised by expr.symbolic / gradient_probe.
    """
    if state.legacy_keys:  # a generation begun under task-agnostic keys ends under them (checkpoint)
        return [canonical_key(t) for t in state.population]
    kind = task_kind(state)
    by_form: dict[str, str] = {}
    by_signature = dict(state.signatures)
    for tree in state.population:
        form = canonical_key(tree, kind)
        if form not in by_form:
            found = None if form in state.cache else signature(state, tree)
            by_form[form] = form if found is None else by_signature.setdefault(found, form)
    return [by_form[canonical_key(t, kind)] for t in state.population]


def remember_signature(state: SearchState, index: int, key: str) -> None:
    """Record the gradient signature of an evaluated candidate, so a later generation's candidate
    with the same gradient takes its key (population_keys)."""
    if state.legacy_keys:
        return
    found = signature(state, state.population[index])
    if found is not None:
        state.signatures.setdefault(found, key)


def signature(state: SearchState, tree: Node) -> str | None:
    """The candidate's gradient signature for the task; up to scale under the tuned protocol, whose
    fitness trains c * L exactly as L (scoring.protocol)."""
    stored = state.config.get("training") or {}
    up_to_scale = stored.get("lr_protocol", "fixed") == "tuned"  # a state stored before the protocol: fixed
    return gradient_signature(tree, task_kind(state), up_to_scale)


def loss_identities(state: SearchState, entry: HallOfFameEntry) -> set[tuple]:
    """What makes an entry one candidate with another, as the cache keys do: its symbolic loss's
    canonical form for the task or gradient signature (learned weights refine that one candidate)."""
    tree = parse(entry.expression)
    identities = {("form", canonical_key(tree, task_kind(state)))}
    found = signature(state, tree)
    if found is not None:
        identities.add(("gradient", found))
    return identities
