"""The final choice: the hall of fame's best few compared at their own best rates, on validation only."""

import dataclasses
import json

import torch

from search_engine.cli import chosen_rank, describe_final_choice
from search_engine.expr.tree import parse, to_prefix
from search_engine.scoring.final_choice import choose_final, meta_test_final
from search_engine.tasks.task import load_task

from ..conftest import tiny_config

CE = "mul(-1, mul(y, log(f)))"
FLAT = "mul(y, sub(f, f))"  # zero gradient: training never moves, so it stays at chance


def _without_test_split(task):
    """The task with a test split of NaNs: anything read from it would show as NaN or a crash."""
    s = task.splits
    nan = dataclasses.replace(s, x_test=torch.full_like(s.x_test, float("nan")))
    return dataclasses.replace(task, splits=nan)


def test_the_loss_best_at_its_own_rate_on_validation_is_chosen_without_reading_the_test_split():
    config = tiny_config(meta_test={"steps": 40})
    task = _without_test_split(load_task(config))
    entries = [{"expression": FLAT, "weights": None}, {"expression": CE, "weights": None}]
    choice = choose_final(task, config, entries, "cross_entropy")
    assert choice["chosen"] == 2
    flat, ce = choice["candidates"]
    assert (flat["rank"], ce["rank"]) == (1, 2) and ce["validation"] < flat["validation"]
    assert choice["baseline"]["validation"] == ce["validation"]  # the same loss, the same numbers
    assert all(v is None or v == v for _, v in ce["tried"])  # no NaN: the test split was not read
    assert "* rank 2" in describe_final_choice(choice)


def test_only_the_first_finalists_are_compared():
    config = tiny_config(meta_test={"steps": 20})
    task = load_task(config)
    entries = [{"expression": CE}, {"expression": FLAT}, {"expression": to_prefix(parse("square(sub(f, y))"))}]
    choice = choose_final(task, config, entries, "cross_entropy", finalists=2)
    assert [c["rank"] for c in choice["candidates"]] == [1, 2]


def test_the_meta_test_of_the_final_choice_records_its_rank(tmp_path):
    config = tiny_config(meta_test={"steps": 20, "seeds": 2})
    task = load_task(config)
    record = meta_test_final(task, config, [{"expression": FLAT}, {"expression": CE}], "cross_entropy")
    assert record["rank"] == 2 and record["expression"] == CE and record["final_choice"]["chosen"] == 2
    assert "tuned_lr" in record
    # The paper's protocol alone: the hall of fame's best is the learned loss, with no comparison.
    paper = meta_test_final(task, config, [{"expression": FLAT}, {"expression": CE}], "cross_entropy", tune_lr=False)
    assert paper["rank"] == 1 and paper["final_choice"] is None and "tuned_lr" not in paper
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"meta_test": {"rank": record["rank"]}}))
    assert chosen_rank(path, None) == 2 and chosen_rank(path, 1) == 1
    path.write_text("{}")
    assert chosen_rank(path, None) == 1
