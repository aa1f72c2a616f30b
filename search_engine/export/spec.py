"""A learned loss and what is known about it: the one value every export format renders.

A `LearnedLossSpec` is read from a search's result.json (`LearnedLossSpec.from_result`) or from a
JSON export (`export.json_export.from_json_export`). A loss has one of two forms:

- an expression tree, with optional learned edge weights: ``weights[i]`` scales the output of
  the node at prefix position ``i + 1`` (the order of `Node.walk()`; the root has none) before
  its parent uses it. Without weights (None) the loss is exactly the symbolic tree;
- a network loss (`network`, an `expr.network.NetworkLoss`): its `expression` is the network's
  description, it has no tree and no edge weights. Exporters branch on ``spec.network is None``.

`method` names the method that learned it (a key of `catalog.METHODS`); files written before it
was recorded are read as EvoMAL's (an expression) or ML3's (a network), the only methods then.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from search_engine import catalog
from search_engine.expr.network import NetworkLoss
from search_engine.expr.tree import Node, parse, to_prefix

RESULT_FORMAT = "lfl-search-result"


def _optional_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number or null, got {type(value).__name__}")
    return float(value)


def _check_str(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")


def check_weights(weights: Any, tree: Node) -> tuple[float, ...] | None:
    """`weights` as a tuple of finite floats, one per edge of `tree` (size - 1), or None."""
    if weights is None:
        return None
    if isinstance(weights, str | bytes | dict) or not hasattr(weights, "__iter__"):
        raise ValueError(f"weights must be a list of numbers or null, got {type(weights).__name__}")
    values = list(weights)
    edges = tree.size() - 1
    if len(values) != edges:
        raise ValueError(
            f"weights has {len(values)} value(s), but the tree has {tree.size()} nodes and so "
            f"{edges} edge weight(s)"
        )
    out = []
    for i, w in enumerate(values):
        if isinstance(w, bool) or not isinstance(w, int | float):
            raise ValueError(f"weights[{i}] must be a number, got {type(w).__name__}")
        if not math.isfinite(w):
            raise ValueError(f"weights[{i}] must be finite, got {w!r}")
        out.append(float(w))
    return tuple(out)


@dataclass(frozen=True)
class LearnedLossSpec:
    """One learned loss and what is known about it; validated on construction.

    `expression` is stored in the canonical prefix form of `to_prefix`; `weights` as a tuple of
    floats (one per edge) or None for the plain symbolic loss. With `network` (a NetworkLoss or
    its JSON dict), `expression` becomes the network's description and `weights` must be None.
    `method` left empty becomes "evomal" for an expression and "ml3" for a network.
    """

    expression: str
    weights: tuple[float, ...] | None
    kind: str  # "classification" or "regression"
    dataset: str
    model: str
    fitness: float | None  # validation metric of the learned loss (lower is better)
    baseline_loss: str
    baseline_fitness: float | None
    metric: str  # "error rate" or "MSE"
    meta_test: str | None = None  # one-line meta-test summary, when the result was meta-tested
    network: NetworkLoss | None = None  # a network loss instead of an expression tree
    method: str = ""  # the method that learned it, a key of catalog.METHODS

    def __post_init__(self) -> None:
        _check_str("expression", self.expression)
        if self.network is not None:
            self._check_network()
        else:
            tree = parse(self.expression)  # ExpressionError (a ValueError) names the problem
            object.__setattr__(self, "expression", to_prefix(tree))
            object.__setattr__(self, "weights", check_weights(self.weights, tree))
        if self.kind not in catalog.KINDS:
            raise ValueError(f"kind must be one of {', '.join(catalog.KINDS)}, got {self.kind!r}")
        for name in ("dataset", "model", "baseline_loss", "metric"):
            _check_str(name, getattr(self, name))
        if self.meta_test is not None:
            _check_str("meta_test", self.meta_test)
        self._check_method()
        object.__setattr__(self, "fitness", _optional_float("fitness", self.fitness))
        object.__setattr__(
            self, "baseline_fitness", _optional_float("baseline_fitness", self.baseline_fitness)
        )

    def _check_network(self) -> None:
        """A network loss: read its JSON form; its description is the expression; no edge weights."""
        try:
            network = NetworkLoss.from_dict(self.network)
        except ValueError as exc:
            raise ValueError(f"network: {exc}") from exc
        if self.weights is not None:
            raise ValueError("weights must be null for a network loss (its weights are in 'network')")
        object.__setattr__(self, "network", network)
        object.__setattr__(self, "expression", network.expression)

    def _check_method(self) -> None:
        """An empty method (not recorded) is EvoMAL's for an expression, ML3's for a network."""
        method = self.method or ("ml3" if self.network is not None else "evomal")
        if not isinstance(method, str) or method not in catalog.METHODS:
            raise ValueError(f"method must be one of {', '.join(catalog.METHODS)}, got {method!r}")
        object.__setattr__(self, "method", method)

    @property
    def method_label(self) -> str:
        """The catalogue's name of the method that learned the loss ("TaylorGLO")."""
        return catalog.METHODS[self.method].label

    @property
    def tree(self) -> Node:
        """The expression tree (ValueError for a network loss, which has none)."""
        if self.network is not None:
            raise ValueError("a network loss has no expression tree")
        return _parse_cached(self.expression)

    @property
    def n_edges(self) -> int:
        return self.tree.size() - 1

    def validation_summary(self) -> str:
        """e.g. "validation error rate: 0.0222 (baseline cross_entropy: 0.0528; lower is better)"."""

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        return (
            f"validation {self.metric}: {fmt(self.fitness)} "
            f"(baseline {self.baseline_loss}: {fmt(self.baseline_fitness)}; lower is better)"
        )

    @classmethod
    def from_result(cls, result: dict, rank: int = 1) -> LearnedLossSpec:
        """The hall-of-fame entry `rank` (1 = best) of a result.json dict."""
        if not isinstance(result, dict):
            raise ValueError(f"a search result must be a JSON object, got {type(result).__name__}")
        if result.get("format", RESULT_FORMAT) != RESULT_FORMAT:
            raise ValueError(
                f"not an lfl search result (format {result.get('format')!r}, expected {RESULT_FORMAT!r})"
            )
        hof = required_field(result, "hall_of_fame", list)
        if not hof:
            raise ValueError("the result's hall of fame is empty: the search found no valid loss to export")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= len(hof):
            raise ValueError(
                f"rank must be an integer between 1 and {len(hof)} (hall of fame size), got {rank!r}"
            )
        entry = hof[rank - 1]
        if not isinstance(entry, dict):
            raise ValueError(f"hall_of_fame[{rank - 1}] must be an object")
        expression = required_field(entry, "expression", str, f"hall_of_fame[{rank - 1}]")
        config = required_field(result, "config", dict)
        task = required_field(config, "task", dict, "config")
        baseline = required_field(result, "baseline_loss", str)
        kind = catalog.kind_of_baseline(baseline)  # ValueError naming the known baselines
        meta = result.get("meta_test")
        meta = meta if isinstance(meta, dict) and meta.get("expression") == expression else None
        try:
            summary = meta_test_summary(meta, kind) if meta else None
        except (TypeError, ValueError):  # a hand-edited meta_test: export without the summary
            meta = summary = None
        return cls(
            expression=expression,
            weights=entry.get("weights"),
            kind=kind,
            dataset=required_field(task, "dataset", str, "config.task"),
            model=required_field(task, "model", str, "config.task"),
            fitness=entry.get("fitness"),
            baseline_loss=baseline,
            baseline_fitness=result.get("baseline_fitness"),
            metric=(meta or {}).get("metric") or catalog.metric_name(kind),
            meta_test=summary,
            network=entry.get("network"),
            method=config.get("method") or "",
        )


@functools.lru_cache(maxsize=256)
def _parse_cached(expression: str) -> Node:
    return parse(expression)


def required_field(obj: dict, key: str, typ: type, where: str = "") -> Any:
    """obj[key], which must exist and have type `typ`."""
    name = f"{where}.{key}" if where else key
    if key not in obj:
        raise ValueError(f"missing field {name!r}")
    if not isinstance(obj[key], typ):
        raise ValueError(f"field {name!r} must be a {typ.__name__}, got {type(obj[key]).__name__}")
    return obj[key]


def meta_test_summary(meta: dict, kind: str) -> str:
    """One line from a meta-test record (result.json's meta_test, a learned loss's row) of a loss of
    task `kind`: the verdict (`scoring.verdict`), then the comparison at each loss's own best
    learning rate, then the one at the search's rate (the paper's protocol), each in the form of
    `metatest.Comparison.summary`."""
    from search_engine.scoring.verdict import FIXED_LABEL, TUNED_LABEL, verdict

    parts = [verdict(meta, kind).sentence]
    tuned = meta.get("tuned_lr")
    if isinstance(tuned, dict):
        rates = f"learned {_rate(tuned.get('learned_lr'))}, baseline {_rate(tuned.get('baseline_lr'))}"
        parts.append(f"{TUNED_LABEL.capitalize()} ({rates}): {_comparison_summary(tuned)}.")
    parts.append(f"{FIXED_LABEL.capitalize()}: {_comparison_summary(meta)}.")
    if meta.get("steps"):
        parts.append(f"Each model trained {meta['steps']} steps.")
    return " ".join(parts).removesuffix(".")  # each format ends the line its own way


def _rate(value: Any) -> str:
    return "n/a (every rate diverged)" if value is None else f"{value:.3g}"


def _comparison_summary(meta: dict) -> str:
    """learned vs baseline mean ± std, wins and the paired t-test of one comparison."""

    def ms(m: Any, s: Any) -> str:
        return "n/a" if m is None else f"{m:.4f} ± {s or 0.0:.4f}"

    n = len(meta.get("seeds") or ())
    p = meta.get("p_value")
    learned = ms(meta.get("learned_mean"), meta.get("learned_std"))
    baseline = ms(meta.get("baseline_mean"), meta.get("baseline_std"))
    return (
        f"test {meta.get('metric', 'metric')}: learned {learned} vs baseline {baseline} over {n} seeds; "
        f"learned better on {meta.get('wins', 0)}/{n}; paired t-test p = {'n/a' if p is None else f'{p:.3g}'}"
    )
