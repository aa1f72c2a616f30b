"""The plain-words verdict of a meta-test: decided by the comparison at tuned rates alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from search_engine.scoring.verdict import (
    FIXED_LABEL,
    SIGNIFICANCE,
    leading_comparison,
    relative_improvement,
    verdict,
)

ROOT = Path(__file__).resolve().parents[3]


def record(tuned: dict | None = None, **fixed) -> dict:
    """A meta-test record: at the search's rate a big, significant win (what a rescaled baseline
    shows), and `tuned` (means and p-value) under "tuned_lr" when given."""
    data = {"metric": "error rate", "learned_mean": 0.10, "baseline_mean": 0.20, "p_value": 0.001, **fixed}
    if tuned is not None:
        data["tuned_lr"] = {"metric": "error rate", "learned_lr": 0.316, "baseline_lr": 1.0, **tuned}
    return data


@pytest.mark.parametrize(("tuned", "code", "phrase"), [
    ({"learned_mean": 0.10, "baseline_mean": 0.12, "p_value": 0.01}, "better",
     "better than cross-entropy at its best learning rate (p = 0.01)"),
    ({"learned_mean": 0.10, "baseline_mean": 0.12, "p_value": SIGNIFICANCE}, "tie",
     "no better than cross-entropy at its best learning rate (p = 0.05)"),
    ({"learned_mean": 0.10, "baseline_mean": 0.12, "p_value": 0.3}, "tie",
     "no better than cross-entropy at its best learning rate (p = 0.3)"),
    ({"learned_mean": 0.10, "baseline_mean": 0.12, "p_value": None}, "tie",  # e.g. a single seed: no test
     "no better than cross-entropy at its best learning rate"),
    ({"learned_mean": 0.14, "baseline_mean": 0.12, "p_value": 0.002}, "worse",
     "worse than cross-entropy at its best learning rate (p = 0.002)"),
    ({"learned_mean": None, "baseline_mean": 0.12, "p_value": None}, "worse",
     "worse than cross-entropy at its best learning rate (training with it diverged)"),
    ({"learned_mean": 0.10, "baseline_mean": None, "p_value": None}, "tie",
     "no better than cross-entropy at its best learning rate"),
])
def test_the_tuned_comparison_alone_decides(tuned, code, phrase):
    said = verdict(record(tuned), "classification")
    assert (said.code, said.phrase) == (code, phrase)
    assert said.sentence == f"The learned loss is {phrase}."
    assert said.p_value == tuned["p_value"]


def test_a_win_at_the_search_rate_alone_is_no_win():
    # the seed-1 search: cross-entropy rescaled "beats" cross-entropy by 24.5% (p tiny) at the
    # search's rate and ties it at tuned rates
    said = verdict(record({"learned_mean": 0.118, "baseline_mean": 0.119, "p_value": 0.71}), "classification")
    assert said.code == "tie" and said.phrase.startswith("no better than cross-entropy at its best learning rate")


def test_a_record_without_tuned_rates_is_untested_and_says_which_protocol_it_used():
    said = verdict(record(), "classification")
    assert said.code == "untested" and said.p_value is None
    assert said.phrase == "not compared with cross-entropy at its best learning rate"
    assert FIXED_LABEL in said.sentence
    assert verdict(None, "classification").code == "untested"
    assert verdict(None, "classification").sentence == "The learned loss has not been meta-tested."


def test_regression_names_its_own_baseline():
    said = verdict(record({"learned_mean": 0.9, "baseline_mean": 1.0, "p_value": 0.2}), "regression")
    assert said.phrase == "no better than squared error at its best learning rate (p = 0.2)"
    with pytest.raises(ValueError, match="unknown task kind"):
        verdict(record(), "ranking")


def test_a_loss_that_only_rescales_the_baseline_is_named_as_such():
    tie = {"learned_mean": 0.12, "baseline_mean": 0.12, "p_value": 0.9}
    said = verdict(record(tie, rescales_baseline=1.56), "classification")
    assert said.code == "tie" and said.rescale == 1.56
    assert said.sentence.endswith("It only rescales cross-entropy: its gradient is 1.56 times cross-entropy's, "
                                  "which a change of learning rate does as well.")
    itself = verdict(record(tie, rescales_baseline=1.0), "classification").sentence
    assert itself.endswith("It is cross-entropy itself: its gradient is cross-entropy's.")
    for stored in (None, "1.5", True, float("nan")):  # not measured, or not a number: nothing is claimed
        said = verdict(record(tie, rescales_baseline=stored), "classification")
        assert said.rescale is None and "rescales" not in said.sentence


def test_odd_stored_values_do_not_break_the_verdict():
    said = verdict(record({"learned_mean": 0.1, "baseline_mean": 0.2, "p_value": float("nan")}), "classification")
    assert (said.code, said.p_value) == ("tie", None)  # no readable test: no claim of a difference
    assert verdict({"tuned_lr": "not a dict"}, "classification").code == "untested"
    assert verdict([1, 2], "classification").code == "untested"


def test_the_leading_comparison_and_its_relative_improvement():
    tuned = {"learned_mean": 0.15, "baseline_mean": 0.2, "p_value": 0.04}
    assert leading_comparison(record(tuned)) == (record(tuned)["tuned_lr"], True)
    assert leading_comparison(record()) == (record(), False)
    assert leading_comparison(None) == (None, False)
    assert relative_improvement(record(tuned)["tuned_lr"]) == pytest.approx(0.25)
    assert relative_improvement(record()) == pytest.approx(0.5)
    assert relative_improvement({"learned_mean": 0.0, "baseline_mean": 0.0}) == 0.0
    assert relative_improvement({"learned_mean": 0.1, "baseline_mean": 0.0}) is None
    assert relative_improvement(None) is None


def test_the_verdict_as_json_and_without_torch():
    said = verdict(record({"learned_mean": 0.1, "baseline_mean": 0.12, "p_value": 0.01}), "classification")
    assert said.to_dict() == {"code": "better", "phrase": said.phrase, "sentence": said.sentence,
                              "p_value": 0.01, "rescale": None}
    code = ("import sys; from search_engine.scoring.verdict import verdict; verdict(None, 'classification');"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"  # pages render it without loading the numeric stack
