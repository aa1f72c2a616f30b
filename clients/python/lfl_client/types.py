"""What the server answers, as typed objects. Each keeps the whole answer in `raw`, so a field the
server adds later is still at hand; `from_dict` takes the fields it knows and ignores the rest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

#: Search statuses after which nothing more happens to the search itself.
FINISHED = ("succeeded", "failed", "cancelled")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """An instance of dataclass `cls` from an answer: its known keys, nested types converted."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name == "raw" or f.name not in data:
            continue
        convert = _NESTED.get((cls.__name__, f.name))
        kwargs[f.name] = convert(data[f.name]) if convert and data[f.name] is not None else data[f.name]
    return cls(**kwargs, raw=data)


@dataclass(frozen=True)
class Verdict:
    """The meta-test in plain words: `code` is better, tie, worse or untested (against the baseline at
    its own best learning rate); `sentence` is what the pages say."""

    code: str = "untested"
    phrase: str = ""
    sentence: str = ""
    p_value: float | None = None
    rescale: float | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Comparison:
    """One meta-test comparison: the learned loss and the baseline over paired seeds on held-out data."""

    metric: str | None = None
    learned_mean: float | None = None
    learned_std: float | None = None
    baseline_mean: float | None = None
    baseline_std: float | None = None
    wins: int | None = None
    t_statistic: float | None = None
    p_value: float | None = None
    seeds: int = 0
    relative_improvement: float | None = None
    learned_lr: float | None = None  # at tuned rates: the rates picked on validation data
    baseline_lr: float | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class LearnedLoss:
    """A learned loss (an entry of an experiment's hall of fame), its meta-test first."""

    id: int
    rank: int | None = None
    expression: str = ""
    latex: str = ""
    method: str = ""
    complexity: int | None = None
    validation_fitness: float | None = None
    baseline_fitness: float | None = None
    dataset: str = ""
    model: str = ""
    metric: str = ""
    generation: int | None = None
    weights: list | None = None
    verdict: Verdict = field(default_factory=Verdict)
    tuned_comparison: Comparison | None = None  # each loss at its own best learning rate
    fixed_rate_comparison: Comparison | None = None  # at the search's learning rate (the paper's protocol)
    improvement: float | None = None
    relative_improvement: float | None = None
    experiment_id: int | None = None
    experiment_name: str = ""
    author: str = ""
    created_at: str | None = None
    downloads: dict[str, str] = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class LeaderboardEntry(LearnedLoss):
    """A leaderboard row: what it is ranked by (`meta_test_improvement`, tuned where the meta-test was)."""

    meta_test_improvement: float | None = None
    meta_test_improvement_basis: str | None = None  # "tuned", "search_rate", or None: not meta-tested
    meta_test_improvement_at_search_rate: float | None = None
    method_label: str = ""


@dataclass(frozen=True)
class Generation:
    """One generation's summary (a point of the dashboard's curve)."""

    generation: int
    best_fitness: float | None = None
    mean_fitness: float | None = None
    median_fitness: float | None = None
    evaluated: int = 0
    rejected: int = 0
    cache_hits: int = 0
    best_expression: str | None = None
    seconds: float | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Experiment:
    """An experiment's row: its configuration and where its search and meta-test stand."""

    id: int
    name: str = ""
    description: str = ""
    owner: str = ""
    private: bool = False
    config: dict = field(default_factory=dict)
    status: str = ""
    cancel_requested: bool = False
    current_generation: int = 0
    total_generations: int = 0
    metric: str = ""
    baseline_loss: str = ""
    baseline_fitness: float | None = None
    error: str = ""
    meta_test_status: str = ""
    meta_test_error: str = ""
    meta_test_seeds_done: int = 0
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    urls: dict[str, str] = field(default_factory=dict)
    work_estimate: dict[str, int] | None = None  # only in the answer that created it
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Nothing more will happen: the search has finished and no meta-test is running."""
        return self.status in FINISHED and self.meta_test_status != "running"


@dataclass(frozen=True)
class ExperimentDetail(Experiment):
    """An experiment with every generation's summary and its learned losses (best first)."""

    generations: list[Generation] = field(default_factory=list)
    learned_losses: list[LearnedLoss] = field(default_factory=list)

    @classmethod
    def from_answer(cls, data: dict) -> ExperimentDetail:
        """From GET /api/experiments/<id>/: the row under "experiment", the rest beside it."""
        return from_dict(cls, {**data["experiment"], "generations": data.get("generations", []),
                               "learned_losses": data.get("learned_losses", [])})


@dataclass(frozen=True)
class Transfer:
    """A learned loss meta-tested on another task."""

    id: int
    learned_loss: int | None = None
    dataset: str = ""
    model: str = ""
    status: str = ""
    seeds: int | None = None
    steps: int | None = None
    seeds_done: int = 0
    verdict: Verdict | None = None
    improvement: float | None = None
    improvement_basis: str | None = None
    improvement_at_search_rate: float | None = None
    record: dict | None = None
    error: str | None = None
    created_at: str | None = None
    finished_at: str | None = None
    url: str = ""
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")


def _comparison(data: dict) -> Comparison:
    return from_dict(Comparison, data)


_NESTED = {
    **{(name, "verdict"): (lambda d: from_dict(Verdict, d)) for name in ("LearnedLoss", "LeaderboardEntry", "Transfer")},
    **{(name, key): _comparison for name in ("LearnedLoss", "LeaderboardEntry")
       for key in ("tuned_comparison", "fixed_rate_comparison")},
    ("ExperimentDetail", "generations"): lambda items: [from_dict(Generation, g) for g in items],
    ("ExperimentDetail", "learned_losses"): lambda items: [from_dict(LearnedLoss, e) for e in items],
}
