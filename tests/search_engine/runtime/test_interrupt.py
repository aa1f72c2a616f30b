"""A stop request reaches inside training runs and local searches, not only the gaps between chunks."""

import pytest

from search_engine.evolution.events import CandidateEvaluated, GenerationFinished, SearchFinished
from search_engine.expr.losses import make_loss
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR
from search_engine.population.local_search import local_search_population
from search_engine.population.training import fitness_population, population_loss
from search_engine.runtime import interrupt
from search_engine.scoring.local_search import local_search
from search_engine.study.driver import run_search
from search_engine.tasks.task import load_task
from search_engine.tasks.training import train

from ..conftest import StopAfter, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task_and_config():
    config = tiny_config(local_search={"mode": "all", "meta_steps": 30})
    return load_task(config), config


def test_check_is_silent_outside_a_search_and_asks_only_every_few_steps():
    interrupt.check(0)  # no watcher installed: nothing happens
    stop = StopAfter(1000)
    with interrupt.watching(stop):
        for step in range(3 * interrupt.CHECK_EVERY):
            interrupt.check(step)
    assert stop.asked == 3  # steps 0, CHECK_EVERY and 2 * CHECK_EVERY


def test_check_raises_once_stop_answers_true():
    stop = StopAfter(2)
    with pytest.raises(interrupt.Stopped), interrupt.watching(stop):
        for step in range(100):
            interrupt.check(step)
    assert stop.asked == 2
    interrupt.check(0)  # the watcher is gone after the block


@pytest.mark.parametrize("loop", ["train", "train_population", "local_search", "local_search_population"])
def test_every_training_loop_stops_within_check_every_steps(task_and_config, loop):
    task, config = task_and_config
    s = task.splits
    runs = {
        "train": lambda: train(task.new_model(0), make_loss(CROSS_ENTROPY, task.kind), s.x_train, s.y_train,
                               config.training),
        "train_population": lambda: fitness_population(
            task.new_model(0), population_loss([CROSS_ENTROPY, SQUARED_ERROR], task.kind), 2, s, task.kind,
            config.training, 0),
        "local_search": lambda: local_search(task, CROSS_ENTROPY, config.local_search, config.training, 0),
        "local_search_population": lambda: local_search_population(
            task, [CROSS_ENTROPY, SQUARED_ERROR], config.local_search, config.training, 0),
    }
    stop = StopAfter(2)  # False at step 0, True at step CHECK_EVERY
    with pytest.raises(interrupt.Stopped), interrupt.watching(stop):
        runs[loop]()
    assert stop.asked == 2


def test_a_stop_inside_a_batched_chunk_drops_only_the_unfinished_chunk():
    # One chunk of 6 per generation: before this change a stop waited for the whole chunk.
    config = tiny_config(evaluation={"strategy": "batched", "max_population_chunk": 25})
    seen = []
    asked_after_gen0 = []

    def should_stop():
        if any(isinstance(e, GenerationFinished) for e in seen):
            asked_after_gen0.append(1)
            return len(asked_after_gen0) >= 3  # chunk check, step 0, then step CHECK_EVERY
        return False

    result = run_search(config, seen.append, should_stop)
    assert result.status == "stopped" and len(result.history) == 1
    later = [e for e in seen if isinstance(e, CandidateEvaluated) and e.generation == 1]
    # generation 1's chunk was interrupted: none of it is reported, only the cache hits before it
    assert all(e.cache_hit for e in later) and [e.index for e in later] == list(range(len(later)))
    assert len(asked_after_gen0) == 3  # it stopped inside the chunk's training, not after it
    assert result.best is not None and result.best.generation == 0  # generation 0's finds are kept
    assert isinstance(seen[-1], SearchFinished) and seen[-1].status == "stopped"


def test_a_stop_inside_local_search_stops_the_search(task_and_config):
    config = tiny_config(local_search={"mode": "all", "meta_steps": 30})
    stop = StopAfter(4)  # loop check, chunk check, then inside the rejection-free local search
    seen = []
    result = run_search(config, seen.append, stop)
    assert result.status == "stopped" and result.history == ()
    assert stop.asked == 4
    assert not any(isinstance(e, CandidateEvaluated) for e in seen)
