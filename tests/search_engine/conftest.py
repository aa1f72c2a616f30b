import pytest

from search_engine.config import load_config


def tiny_config(**overrides):
    """A search small enough to run in a few seconds on 2 CPU cores, on the real digits data."""
    data = {
        "task": {"dataset": "digits", "model": "logistic", "max_train": 400},
        "search": {"population_size": 6, "generations": 3, "hall_of_fame_size": 5},
        "training": {"steps": 40, "batch_size": 64, "lr": 0.05},
        "rejection": {"steps": 30, "samples": 60},
        "local_search": {"mode": "off", "meta_steps": 5, "batch_size": 32},
        # A fixed plan: "auto" times the machine, and a different chunking can change results at float
        # tolerance, which would make runs compared with each other (reproducibility, resume) flaky.
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


@pytest.fixture
def tiny():
    return tiny_config
