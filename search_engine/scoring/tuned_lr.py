"""Meta-testing at a tuned learning rate: each loss at its own best rate, picked on validation data.

A learned loss often wins partly because it rescales the gradient, an implicit change of the
learning rate. To tell that apart from a better shape, each loss (learned and baseline alike) is
trained at every rate of a grid of half-decades, 0.01 to 1, and scored on the validation split
(the test split stays untouched until the comparison). When the best rate lies on an edge of the
grid, the grid is extended by one half-decade beyond that edge, up to `MAX_EXTENSIONS` times per
side: cross-entropy with plain SGD often does best above 0.3, a rescaling loss below 0.01.
Then every loss is meta-tested at its own rate on the usual paired seeds.

Rates are named by integer exponents k (rate = 10 ** (k / 2)), so a grid point is exact and a
rate chosen on one machine is the same number on another.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from search_engine.config import ExperimentConfig
from search_engine.tasks.task import Task
from search_engine.tasks.training import LossFn, evaluate_metric, train

GRID_EXPONENTS = range(-4, 1)  # 0.01, 0.0316, 0.1, 0.316, 1
MAX_EXTENSIONS = 3  # half-decades added beyond an edge, per side (so 1e-3.5 ... 10 ** 1.5 at most)
TUNING_SEED_OFFSET = 2000  # tuning trains its own seed, apart from the search's and the test seeds


def rate(k: int) -> float:
    """The learning rate of half-decade exponent `k`."""
    return 10.0 ** (k / 2)


def choose_rate(score: Callable[[float], float | None], exponents: Sequence[int] = GRID_EXPONENTS,
                max_extensions: int = MAX_EXTENSIONS) -> tuple[float | None, dict[float, float | None]]:
    """The rate of lowest `score` (None = diverged) over the grid, extended past an edge that wins.

    Returns (best rate or None if every rate diverged, {rate: score} of every rate tried). Ties go
    to the smaller rate, so the choice is a function of the scores alone.
    """
    scores: dict[int, float | None] = {k: score(rate(k)) for k in exponents}
    lo, hi, added = min(exponents), max(exponents), {"lo": 0, "hi": 0}
    while True:
        best = _best(scores)
        if best == lo and added["lo"] < max_extensions:
            lo, added["lo"] = lo - 1, added["lo"] + 1
            scores[lo] = score(rate(lo))
        elif best == hi and added["hi"] < max_extensions:
            hi, added["hi"] = hi + 1, added["hi"] + 1
            scores[hi] = score(rate(hi))
        else:
            return (None if best is None else rate(best)), {rate(k): v for k, v in sorted(scores.items())}


def _best(scores: dict[int, float | None]) -> int | None:
    finite = [(v, k) for k, v in scores.items() if v is not None and math.isfinite(v)]
    return min(finite)[1] if finite else None


def at_rate(config: ExperimentConfig, lr: float) -> ExperimentConfig:
    """`config` with the training learning rate replaced."""
    return dataclasses.replace(config, training=dataclasses.replace(config.training, lr=lr))


def validation_metric(task: Task, loss_fn: LossFn, config: ExperimentConfig, lr: float, steps: int) -> float | None:
    """Train a fresh model (the tuning seed) at rate `lr`, on the meta-test's schedule (its milestones
    and decay: a rate is picked for the training it will get); its validation metric, None if it diverged."""
    seed = config.seed + TUNING_SEED_OFFSET
    s = task.splits
    model = task.new_model(seed)
    m = config.meta_test
    if not train(model, loss_fn, s.x_train, s.y_train, at_rate(config, lr).training, steps=steps, data_seed=seed,
                 lr_milestones=tuple(m.lr_milestones), lr_gamma=m.lr_gamma):
        return None
    value = evaluate_metric(model, s.x_val, s.y_val, task.kind)
    return value if math.isfinite(value) else None


def tune_rates(task: Task, config: ExperimentConfig, losses: dict[str, LossFn], steps: int) -> dict[str, Any]:
    """{name: {"lr": best rate or None, "tried": {rate: validation metric}}} for every loss."""
    out = {}
    for name, loss_fn in losses.items():
        best, tried = choose_rate(lambda lr, f=loss_fn: validation_metric(task, f, config, lr, steps))
        out[name] = {"lr": best, "tried": [[lr, v] for lr, v in tried.items()]}
    return out
