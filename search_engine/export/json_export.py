"""The versioned JSON form of a learned loss, and reading it back into the engine.

An expression loss carries its prefix `expression`, its `tree` and its `weights`; a network loss
carries `network` (the `expr.network.NetworkLoss` JSON form), its description as `expression`,
and null `tree` and `weights`. `method` names the method that learned it; an export written before
it was recorded has none (see `LearnedLossSpec.method`).
"""

from __future__ import annotations

from typing import Any

from search_engine.export.spec import LearnedLossSpec, required_field
from search_engine.expr.tree import ExpressionError, from_json, parse, to_json, to_prefix

JSON_FORMAT = "lfl-learned-loss"
JSON_VERSION = 1


def to_json_export(spec: LearnedLossSpec) -> dict[str, Any]:
    """A versioned JSON description; `from_json_export` reads it back."""
    network = spec.network
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "expression": spec.expression,
        "tree": to_json(spec.tree) if network is None else None,
        "weights": None if spec.weights is None else list(spec.weights),
        "network": None if network is None else network.to_dict(),
        "kind": spec.kind,
        "task": {"dataset": spec.dataset, "model": spec.model},
        "metric": spec.metric,
        "fitness": spec.fitness,
        "baseline": {"loss": spec.baseline_loss, "fitness": spec.baseline_fitness},
        "meta_test": spec.meta_test,
        "method": spec.method,
    }


def from_json_export(data: Any) -> LearnedLossSpec:
    """Re-import a `to_json_export` dict; ValueError (ExpressionError for the formula) if invalid."""
    if not isinstance(data, dict):
        raise ValueError(f"a learned-loss export must be a JSON object, got {type(data).__name__}")
    if data.get("format") != JSON_FORMAT:
        raise ValueError(
            f"not an lfl learned-loss export: format is {data.get('format')!r}, expected {JSON_FORMAT!r}"
        )
    version = data.get("version")
    if version != JSON_VERSION or isinstance(version, bool):
        raise ValueError(
            f"unsupported learned-loss export version {version!r}; this lfl reads version {JSON_VERSION}"
        )
    expression = required_field(data, "expression", str)
    network = data.get("network")
    if network is None:
        _check_tree(data, expression)
    elif data.get("tree") is not None:
        raise ValueError("a network loss has no 'tree'; it must be null")
    task = required_field(data, "task", dict)
    baseline = required_field(data, "baseline", dict)
    return LearnedLossSpec(
        expression=expression,
        weights=data.get("weights"),
        kind=required_field(data, "kind", str),
        dataset=required_field(task, "dataset", str, "task"),
        model=required_field(task, "model", str, "task"),
        fitness=data.get("fitness"),
        baseline_loss=required_field(baseline, "loss", str, "baseline"),
        baseline_fitness=baseline.get("fitness"),
        metric=required_field(data, "metric", str),
        meta_test=data.get("meta_test"),
        network=network,
        method=data.get("method") or "",
    )


def _check_tree(data: dict, expression: str) -> None:
    """The expression parses, and the stored tree (if any) is that expression."""
    tree = parse(expression)  # lets the ExpressionError (message and position) through
    if "tree" in data and data["tree"] is not None:
        try:
            stored = from_json(data["tree"])
        except ExpressionError as exc:
            raise ExpressionError(f"tree: {exc}") from exc
        if stored != tree:
            raise ValueError(f"'tree' does not match 'expression' ({to_prefix(stored)} vs {to_prefix(tree)})")
