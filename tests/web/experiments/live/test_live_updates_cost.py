"""A live update costs the same however far the search has gone: a generation's Pareto chart reads
only the rows that generation added (pareto.RunningFront), yet draws exactly what the page draws
from every row; and an event relayed to many viewers of one process is encoded once."""

import functools
import json
import math

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from lfl_web.experiments.live import consumer
from lfl_web.experiments.live.consumer import EncodedEvents
from lfl_web.experiments.live.recording import SAVERS, json_ready, record_event
from lfl_web.experiments.models import Candidate, Experiment, Generation
from lfl_web.experiments.results import dashboard, pareto
from lfl_web.experiments.results.dashboard import render_panels, update_message
from lfl_web.experiments.results.pareto import RunningFront, pareto_view
from search_engine.evolution.events import CandidateEvaluated, GenerationFinished, SearchStarted

pytestmark = pytest.mark.django_db

POPULATION = 6
#: Losses of sizes 1 to 9 that a search meets again and again.
FORMS = [("k1", "f"), ("k3", "square(sub(f, y))"), ("k2", "sub(f, y)"), ("k4", "mul(-1, mul(y, log(f)))"),
         ("k5", "add(mul(y, f), div(1, add(f, -1)))")]
#: The loss "k3" in a larger form (two expressions with one canonical key).
LARGER_K3 = ("k3", "square(sub(f, mul(1, y)))")


def candidate(generation, index, fitness=None, unique=True, form=None):
    """A candidate: a new loss (`unique`), else one of FORMS or `form`; rejected when `fitness` is None."""
    if form or not unique:
        key, expression = form or FORMS[index % len(FORMS)]
    else:
        key = expression = f"add(f, mul({generation}, {'sqrt(' * (index % 4)}y{')' * (index % 4)}))"
    return CandidateEvaluated(generation=generation, index=index, expression=expression, canonical_key=key,
                              latex=key, fitness=fitness, rejection_reason=None if fitness is not None else "diverged",
                              cache_hit=False)


def finished(generation):
    return GenerationFinished(generation=generation, best_fitness=0.1, mean_fitness=0.2, median_fitness=0.2,
                              evaluated=POPULATION, rejected=0, cache_hits=0, best_expression="f", best_latex="f",
                              hall_of_fame=(), seconds=1.0)


def fitness_of(generation, index):
    return round(0.5 - generation / 100 + (index * 7 % 5) / 50, 4) if index % 5 else None


def store_history(experiment, generations):
    """`generations` finished generations of POPULATION new losses each, written directly."""
    rows = [candidate(g, i, fitness_of(g, i)) for g in range(generations) for i in range(POPULATION)]
    Candidate.objects.bulk_create(
        Candidate(experiment=experiment, generation=c.generation, index=c.index, expression=c.expression,
                  canonical_key=c.canonical_key, latex=c.latex, fitness=c.fitness,
                  rejection_reason=c.rejection_reason or "") for c in rows)
    Generation.objects.bulk_create(Generation(experiment=experiment, index=g, best_fitness=0.1) for g in range(generations))
    Experiment.objects.filter(pk=experiment.pk).update(current_generation=generations)


def rows_read(action) -> int:
    """How many rows the database returned to the SELECTs `action` ran (each counted again afterwards)."""
    executed = []

    def spy(execute, sql, params, many, context):
        executed.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        action()
    total = 0
    with connection.cursor() as cursor:
        for sql, params in executed:
            if sql.lstrip().upper().startswith("SELECT"):
                cursor.execute(f"SELECT COUNT(*) FROM ({sql}) AS read_rows", params)
                total += cursor.fetchone()[0]
    return total


def generation_update_rows(make_experiment, generations) -> int:
    """Rows read by the update of the last of `generations`, announced as a worker announces each one."""
    experiment = make_experiment(baseline_loss="cross_entropy", baseline_fitness=0.5, total_generations=generations)
    store_history(experiment, generations - 1)
    record_event(experiment.pk, finished(generations - 2))  # the previous generation's update, as it was sent
    for index in range(POPULATION):
        record_event(experiment.pk, candidate(generations - 1, index, fitness_of(generations - 1, index)))
    data = json_ready(finished(generations - 1).to_dict())
    SAVERS["generation_finished"](experiment.pk, data)
    return rows_read(lambda: update_message(experiment.pk, data))


def test_a_generation_update_reads_as_many_rows_after_40_generations_as_after_2(make_experiment):
    after_2, after_40 = (generation_update_rows(make_experiment, n) for n in (2, 40))
    assert after_2 == after_40, f"{after_2} rows read for generation 1, {after_40} for generation 39"


# ----------------------------------------------------------------------------- the same chart as the page


def pareto_of_update(message) -> str:
    return message["panels"]["pareto-panel"]


def page_pareto(experiment_id) -> str:
    return render_panels(Experiment.objects.get(pk=experiment_id), ("pareto-panel",))["pareto-panel"]


def test_the_live_chart_is_the_pages_through_resumes_redeliveries_and_a_loss_in_two_forms(make_experiment,
                                                                                         monkeypatch):
    monkeypatch.setattr(dashboard, "experiment_chart", functools.partial(pareto.experiment_chart, limit=3))
    experiment = make_experiment(baseline_loss="cross_entropy", baseline_fitness=0.5, total_generations=8)

    def generation(g, shift=0.0, forms=None):
        for index in range(POPULATION):
            fitness = fitness_of(g, index)
            fitness = None if fitness is None else fitness + shift
            form = (forms or {}).get(index)
            record_event(experiment.pk, candidate(g, index, form[1] if form else fitness, unique=index % 2 == 0,
                                                  form=form[0] if form else None))
        message = record_event(experiment.pk, finished(g))
        assert pareto_of_update(message) == page_pareto(experiment.pk), f"generation {g}"
        return message

    record_event(experiment.pk, SearchStarted(config={}, generations=8, population_size=POPULATION,
                                              start_generation=0, baseline_loss="cross_entropy", baseline_fitness=0.5))
    for g in range(5):
        generation(g)
    # a redelivered candidate of a generation already drawn, now better (k3, in its small form)
    record_event(experiment.pk, candidate(1, 1, 0.01, unique=False))
    generation(5)
    # k3 comes back in its larger form, better still: the small form may have hidden other points
    generation(6, forms={3: (LARGER_K3, 0.001)})
    # the search resumes from generation 3 and redoes it with other results
    record_event(experiment.pk, SearchStarted(config={}, generations=8, population_size=POPULATION,
                                              start_generation=3, baseline_loss="cross_entropy", baseline_fitness=0.5))
    for g in (3, 4, 5):
        generation(g, shift=0.3)
    assert "distinct losses" in generation(6, shift=-0.3)["panels"]["pareto-panel"]


# ----------------------------------------------------------------------------- the merge itself

FITNESS = st.one_of(st.sampled_from([0.1, 0.2, 0.3, None, math.nan]), st.floats(0.0, 1.0))
ROW = st.tuples(st.sampled_from([*FORMS, LARGER_K3]), FITNESS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(ROW, max_size=6), max_size=8), st.lists(ROW, max_size=4), st.integers(0, 4))
def test_a_running_front_shows_what_a_full_read_shows(generations, pending, limit):
    """Generation by generation (starting again from every row when `absorb` refuses), then with the
    rows of an unfinished generation shown on top."""
    front, rows = RunningFront(limit), []
    for number, batch in enumerate(generations):
        new = [(key, expression, "", fitness, number) for (key, expression), fitness in batch]
        rows += new
        if not front.absorb(new, number):
            front = RunningFront(limit)
            assert front.absorb(rows, number)
        assert front.view_with() == pareto_view(rows, limit)
    later = [(key, expression, "", fitness, len(generations)) for (key, expression), fitness in pending]
    shown = front.view_with(later)
    assert shown is None or shown == pareto_view(rows + later, limit)


def test_a_loss_back_in_a_larger_form_makes_the_front_start_again():
    front = RunningFront(limit=0)
    assert front.absorb([("k3", "square(sub(f, y))", "", 0.3, 0), ("k9", "add(f, sqrt(y))", "", 0.4, 0)], 0)
    assert front.absorb([("k3", "square(sub(f, y))", "", 0.2, 1)], 1)  # the same form, better: merged
    assert not front.absorb([("k3", "square(sub(f, mul(1, y)))", "", 0.1, 2)], 2)
    assert front.read_through == 1  # nothing of the refused rows was taken in


# ----------------------------------------------------------------------------- encoded once


def test_an_event_relayed_to_many_viewers_is_encoded_once(monkeypatch):
    calls, real = [], json.dumps
    monkeypatch.setattr(consumer.json, "dumps", lambda value: calls.append(value) or real(value))
    cache = EncodedEvents(size=2)
    event = {"type": "generation_finished", "panels": {"pareto-panel": "<p>size 4 · 0.1</p>"}}
    assert {cache.text(event) for _ in range(100)} == {real(event)}
    assert len(calls) == 1
    twin = dict(event)  # equal, but another message: known by identity only, never by value
    assert cache.text(twin) == real(event) and len(calls) == 2
    for _ in range(2):  # pushed out by newer messages, then encoded again
        cache.text({"type": "other"})
    cache.text(event)
    assert len(calls) == 5
