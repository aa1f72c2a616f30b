"""A meta-test in plain words: is the learned loss better than the baseline?

lfl calls a learned loss better when models trained with it beat the baseline trained at the
baseline's own best learning rate, on held-out data, over paired seeds: a loss that wins only at the
search's learning rate may just rescale the gradient, which a learning rate does as well. So the
verdict reads a meta-test record's comparison at each loss's own best learning rate (its "tuned_lr",
see `metatest.evaluate_learned_loss`). The comparison at the search's learning rate, the EvoMAL
paper's protocol, comes second in every report and decides nothing here; a record without a tuned
comparison (meta-tested with `meta_test.tune_lr` off, as every record was before it was the
default) is "untested".

Torch-free: the dashboard, the leaderboard, the API and the exported module's docstring all call
`verdict` on the stored record, so they say the same thing in the same words.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from search_engine import catalog

#: A paired t-test below this decides "better" or "worse"; at or above it the losses tie.
SIGNIFICANCE = 0.05
#: What reports call the two comparisons (the tuned one leads, the fixed-rate one follows).
TUNED_LABEL = "at each loss's own best learning rate"
FIXED_LABEL = "at the search's learning rate (the paper's protocol)"
#: Verdict codes: significantly better, not significantly different, significantly worse, no tuned comparison.
CODES = ("better", "tie", "worse", "untested")


@dataclass(frozen=True)
class Verdict:
    """What a meta-test record says about the learned loss, against the baseline at its best rate."""

    code: str  # one of CODES
    phrase: str  # "no better than cross-entropy at its best learning rate (p = 0.41)"
    sentence: str  # the phrase said of the learned loss, with a rescaling of the baseline named
    p_value: float | None  # the tuned comparison's paired t-test, where there is one
    rescale: float | None  # c where the loss's gradient is c times the baseline's (it only rescales it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any) -> float | None:
    """`value` as a finite float, else None (a stored record may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def leading_comparison(record: Any) -> tuple[dict | None, bool]:
    """The comparison a report leads with: (the record's at tuned rates, True) where it has one,
    else (the record itself, at the search's rate, False); (None, False) without a record."""
    if not isinstance(record, dict):
        return None, False
    tuned = record.get("tuned_lr")
    return (tuned, True) if isinstance(tuned, dict) else (record, False)


def relative_improvement(comparison: Any) -> float | None:
    """(baseline mean - learned mean) / baseline mean of a comparison: 0.25 for a quarter lower test
    metric. None where a mean is missing (a seed diverged) or the baseline's is 0 and the learned
    loss's is not (no finite ratio)."""
    if not isinstance(comparison, dict):
        return None
    learned, baseline = _number(comparison.get("learned_mean")), _number(comparison.get("baseline_mean"))
    if learned is None or baseline is None:
        return None
    if baseline == 0:
        return 0.0 if learned == 0 else None
    return (baseline - learned) / baseline


def verdict(record: Any, kind: str) -> Verdict:
    """The plain-words verdict of a meta-test `record` (as stored) for a loss of task `kind`.

    "better" / "worse": the tuned comparison's paired t-test has p < SIGNIFICANCE and the learned
    loss's mean test metric is lower / higher; "worse" also when training with it diverged on a
    seed where the baseline's did not; "tie" otherwise; "untested" without a tuned comparison.
    """
    label = catalog.baseline_label(kind)
    rescale = _number(record.get("rescales_baseline")) if isinstance(record, dict) else None
    if not isinstance(record, dict):
        return Verdict("untested", "not meta-tested", "The learned loss has not been meta-tested.", None, None)
    tuned = record.get("tuned_lr")
    if not isinstance(tuned, dict):
        phrase = f"not compared with {label} at its best learning rate"
        sentence = (f"The learned loss was not compared with {label} at its best learning rate: it was "
                    f"meta-tested only {FIXED_LABEL}, where a loss that rescales the gradient can look better.")
        return Verdict("untested", phrase, sentence + _rescaling(rescale, label), None, rescale)
    code, p = _tuned_code(tuned)
    best_rate = f"{label} at its best learning rate"
    phrase = {"better": f"better than {best_rate}", "worse": f"worse than {best_rate}",
              "tie": f"no better than {best_rate}"}[code]
    if p is not None:
        phrase += f" (p = {p:.3g})"
    elif code == "worse":
        phrase += " (training with it diverged)"
    return Verdict(code, phrase, f"The learned loss is {phrase}.{_rescaling(rescale, label)}", p, rescale)


def _tuned_code(tuned: dict) -> tuple[str, float | None]:
    """("better" | "tie" | "worse", the p-value or None) of a comparison at tuned rates."""
    learned, baseline = _number(tuned.get("learned_mean")), _number(tuned.get("baseline_mean"))
    p = _number(tuned.get("p_value"))
    if learned is None:  # a seed diverged: worse, unless the baseline's did too
        return ("worse" if baseline is not None else "tie"), None
    if baseline is None or p is None or p >= SIGNIFICANCE or learned == baseline:
        return "tie", p
    return ("better" if learned < baseline else "worse"), p


def _rescaling(rescale: float | None, label: str) -> str:
    """The sentence naming a loss that only rescales the baseline ("" when it does not)."""
    if rescale is None:
        return ""
    if math.isclose(rescale, 1.0, rel_tol=1e-6):
        return f" It is {label} itself: its gradient is {label}'s."
    return (f" It only rescales {label}: its gradient is {rescale:.3g} times {label}'s, which a change of "
            "learning rate does as well.")

