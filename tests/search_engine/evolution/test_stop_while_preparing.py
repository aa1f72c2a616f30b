"""A stop request is honoured while a search prepares: reading its data, choosing its plan, training
its baseline (before, nothing asked should_stop until the first generation)."""

import numpy as np
import pytest

from search_engine.runtime import interrupt
from search_engine.study.driver import run_search
from search_engine.tasks.datasets import DatasetSpec, load_dataset
from search_engine.tasks.datasets.tabular import POLL_ROWS

from ..conftest import StopAfter, tiny_config


def write_csv(path, rows: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 4))
    with path.open("w") as fh:
        fh.write("a,b,c,d,label\n")
        for i, r in enumerate(x):
            fh.write(",".join(f"{v:.4f}" for v in r) + f",{i % 3}\n")


def run(config, should_stop):
    events = []
    return run_search(config, on_event=events.append, should_stop=should_stop), events


def test_a_stop_while_a_large_csv_is_read_ends_the_search_before_it_starts(tmp_path):
    data = tmp_path / "big.csv"
    write_csv(data, 3 * POLL_ROWS)
    config = tiny_config(task={"dataset": "csv", "data_file": str(data), "kind": "classification", "max_train": None})
    stop = StopAfter(2)  # the second question comes while the rows are still being read
    result, events = run(config, stop)
    assert result.status == "stopped" and result.history == () and result.baseline_fitness is None
    assert [e.type for e in events] == ["search_finished"]
    assert stop.asked == 2


def test_a_stop_while_the_baseline_trains_ends_the_search_before_it_starts():
    stop = StopAfter(1)  # the built-in digits load without asking; the baseline's first step asks
    result, events = run(tiny_config(), stop)
    assert result.status == "stopped" and result.best is None and result.baseline_loss == "cross_entropy"
    assert [e.type for e in events] == ["search_finished"] and events[0].generations_completed == 0


def test_the_csv_reader_asks_every_few_thousand_rows_and_only_inside_a_search(tmp_path):
    data = tmp_path / "rows.csv"
    write_csv(data, 2 * POLL_ROWS + 10)
    spec = DatasetSpec("csv", data_file=str(data), kind="classification")
    asked = StopAfter(10**9)
    with interrupt.watching(asked):
        load_dataset(spec, seed=0)
    assert asked.asked == 2 + 4  # rows 5000 and 10000, then each of the four feature columns
    with interrupt.watching(lambda: True), pytest.raises(interrupt.Stopped):
        load_dataset(spec, seed=0)
    assert load_dataset(spec, seed=0).info.n_outputs == 3  # outside a search nothing asks
