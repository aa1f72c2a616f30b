"""A search computes on its configuration's torch threads (`evaluation.threads`), never on the
process's or the machine's: a thread count changes float rounding (a LeNet-5 local search's learned
weights differed in the 7th digit between 1 and 2 threads before this was configured), so results
would otherwise depend on how many workers share a machine."""

import json

import torch

from search_engine.config import load_config
from search_engine.study.driver import run_search
from search_engine.tasks.task import load_task


def lenet_search(**evaluation) -> dict:
    """LeNet-5 on digits28 with EvoMAL's local search (where the rounding shows), tiny."""
    return {
        "task": {"dataset": "digits28", "model": "lenet5", "val_fraction": 0.1, "max_train": 300},
        "search": {"population_size": 6, "generations": 2},
        # The fixed rate: training the baseline at the tuned protocol's rates first would triple the
        # time, and without the configured threads the history differs between thread counts either way.
        "training": {"steps": 40, "batch_size": 64, "lr_protocol": "fixed"},
        "rejection": {"steps": 20, "samples": 50},
        "local_search": {"mode": "all", "meta_steps": 4, "inner_steps": 1, "batch_size": 64},
        "evaluation": {"strategy": "batched", "max_population_chunk": 2, **evaluation},
        "device": "cpu",
    }


def history(config: dict) -> str:
    result = run_search(load_config(config))
    return json.dumps([{k: v for k, v in g.to_dict().items() if k != "seconds"} for g in result.history])


def test_loading_a_task_sets_the_configured_threads():
    torch.set_num_threads(1)
    load_task(load_config({"task": {"max_train": 100}, "evaluation": {"threads": 2}, "device": "cpu"}))
    assert torch.get_num_threads() == 2
    load_task(load_config({"task": {"max_train": 100}, "device": "cpu"}))
    assert torch.get_num_threads() == 1  # the default


def test_a_search_gives_the_same_history_whatever_threads_the_process_had():
    torch.set_num_threads(2)  # e.g. a worker alone on a 2-core machine
    alone = history(lenet_search())
    torch.set_num_threads(1)  # e.g. one of two workers there
    shared = history(lenet_search())
    assert alone == shared
    assert json.loads(alone)[-1]["hall_of_fame"][0]["weights"]  # local search ran: weights were learned
