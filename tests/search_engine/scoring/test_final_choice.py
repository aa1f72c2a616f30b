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
    told = []
    record = meta_test_final(task, config, [{"expression": FLAT}, {"expression": CE}], "cross_entropy",
                             on_phase=told.append, on_seed=lambda seed: told.append(seed))
    # Each part is told as it begins, and the seeds of both seed parts are counted, each from its start.
    assert [t for t in told if isinstance(t, str)] == ["final_choice", "search_rate", "tuning", "tuned_seeds"]
    seeds = record["seeds"]
    assert told == ["final_choice", "search_rate", *seeds, "tuning", "tuned_seeds", *seeds]
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


def _two_seed_metric(at_1):
    """A fake validation metric: 0.04 at 0.316 for every loss, `at_1[name]` per tuning seed at 1, worse
    elsewhere, diverged above 1 (so the grid does not grow past 1)."""
    def metric(task, loss_fn, config, lr, steps, seed):
        if lr > 1.01:
            return None
        if lr > 0.99:
            return at_1[loss_fn][seed - config.seed - 2000]
        return 0.04 if abs(lr - 0.316) < 0.01 else 0.3
    return metric


def test_a_loss_good_at_a_rate_on_one_tuning_seed_only_is_not_chosen_for_it(monkeypatch):
    from types import SimpleNamespace

    from search_engine.scoring import final_choice, tuned_lr

    # edgy: the best of all at rate 1 on the first seed, bad on the second; steady: good at 1 on both;
    # the baseline (cross-entropy) is edgy at 1 as well, so it is tuned to 0.316 the same way.
    at_1 = {"edgy": (0.01, 0.5), "steady": (0.03, 0.03), "baseline": (0.02, 0.6)}
    monkeypatch.setattr(tuned_lr, "validation_metric", _two_seed_metric(at_1))
    monkeypatch.setattr(final_choice, "_loss", lambda task, fields, probe: fields["expression"])
    monkeypatch.setattr(final_choice, "loss_for", lambda *args: "baseline")
    config = tiny_config(training={"lr_protocol": "fixed"})
    task = SimpleNamespace(kind="classification", device="cpu")
    choice = choose_final(task, config, [{"expression": "edgy"}, {"expression": "steady"}], "cross_entropy")
    edgy, steady = choice["candidates"]
    assert choice["chosen"] == 2 and (steady["lr"], steady["validation"]) == (1.0, 0.03)
    assert abs(edgy["lr"] - 0.316) < 0.001 and edgy["validation"] == 0.04  # one seed alone: 0.01 at 1
    assert abs(choice["baseline"]["lr"] - 0.316) < 0.001 and choice["baseline"]["validation"] == 0.04
    assert [runs for lr, runs in choice["baseline"]["by_seed"] if lr == 1.0] == [[0.02, 0.6]]
    assert "* rank 2: 0.0300 at lr 1.0" in describe_final_choice(choice)


def test_the_meta_test_reuses_the_final_choices_rate_tuning_with_the_same_record(monkeypatch):
    from search_engine.scoring import metatest, tuned_lr

    config = tiny_config(meta_test={"steps": 20, "seeds": 2})
    task = load_task(config)
    entries = [{"expression": FLAT}, {"expression": CE}]
    trained = []
    real = tuned_lr.validation_metric

    def counted(task, loss_fn, config, lr, steps, seed):
        trained.append((lr, seed))
        return real(task, loss_fn, config, lr, steps, seed)

    monkeypatch.setattr(tuned_lr, "validation_metric", counted)
    record = meta_test_final(task, config, entries, "cross_entropy")
    after_choice = len(trained)
    choice = record["final_choice"]
    tuned_in_choice = sum(len(c["tried"]) for c in choice["candidates"]) + len(choice["baseline"]["tried"])
    assert after_choice == tuned_in_choice * len(choice["baseline"]["seeds"])  # the meta-test trained no rate again
    # The same meta-test tuning anew: the same numbers, every rate of both losses trained a second time.
    anew = metatest.evaluate_learned_loss(task, config, CE, None, "cross_entropy", tune_lr=True)
    assert json.dumps(anew["tuned_lr"], sort_keys=True) == json.dumps(record["tuned_lr"], sort_keys=True)
    assert len(trained) > after_choice
    # Rates tuned on other seeds are not taken.
    other = {name: {**t, "seeds": [0, 1]} for name, t in
             {"learned": {"lr": 1.0, "tried": [[1.0, 0.5]], "by_seed": [[1.0, [0.5, 0.5]]]},
              "baseline": {"lr": 1.0, "tried": [[1.0, 0.5]], "by_seed": [[1.0, [0.5, 0.5]]]}}.items()}
    again = metatest.evaluate_learned_loss(task, config, CE, None, "cross_entropy", tune_lr=True, tuning=other)
    assert again["tuned_lr"]["tried"] == anew["tuned_lr"]["tried"]
