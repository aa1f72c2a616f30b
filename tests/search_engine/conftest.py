import pytest
import torch

from search_engine.config import load_config
from search_engine.expr.tree import Node, parse


def tiny_config(**overrides):
    """A search small enough to run in a few seconds on 2 CPU cores, on the real digits data."""
    data = {
        "task": {"dataset": "digits", "model": "logistic", "max_train": 400},
        "search": {"population_size": 6, "generations": 3, "hall_of_fame_size": 5},
        "training": {"steps": 40, "batch_size": 64, "lr": 0.05},
        "rejection": {"steps": 30, "samples": 60},
        "local_search": {"mode": "off", "meta_steps": 5, "batch_size": 32},
        # Chunks of 25 (as "auto" plans a chain model on the CPU) with the batched path named explicitly.
        "evaluation": {"strategy": "batched"},
        "meta_test": {"steps": 40, "seeds": 2},
        "seed": 3,
        "device": "cpu",
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            data[section] = {**data.get(section, {}), **values}
        else:
            data[section] = values
    return load_config(data)


class StopAfter:
    """should_stop that answers True from its n-th question on, counting the questions."""

    def __init__(self, n: int):
        self.n, self.asked = n, 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.asked >= self.n


@pytest.fixture
def tiny():
    return tiny_config


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's many tiny ops on one intra-op thread (much faster on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def nan_tree() -> Node:
    """f * S - y * S with S = ((1 + 1)^2)^...^2 = 2^256 (inf in float32): the loss is NaN from the first step."""
    big = parse("add(1, 1)")
    for _ in range(8):
        big = Node("square", (big,))
    return Node("sub", (Node("mul", (Node("f"), big)), Node("mul", (Node("y"), big))))


def without_seconds(value):
    """A result or event dict with every "seconds" removed (wall-clock time is all that may differ)."""
    if isinstance(value, dict):
        return {k: without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list | tuple):
        return [without_seconds(v) for v in value]
    return value
