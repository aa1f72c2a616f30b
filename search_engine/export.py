"""Exporting a learned loss as files a researcher drops into their own PyTorch code.

A `LearnedLossSpec` is one learned loss with what is known about it (read from a search's
result.json with `LearnedLossSpec.from_result`). Each format renders it:

- ``torch``: a standalone ``.py`` file importing only torch, defining ``LearnedLoss(nn.Module)``;
- ``torchscript``: that module compiled with ``torch.jit.script`` (``.pt``, for ``torch.jit.load``);
- ``latex``: a small LaTeX document with the formula, the weighted formula and the symbols;
- ``json``: a versioned description that `from_json_export` reads back into the engine.

Learned edge weights (optional): ``weights[i]`` scales the output of the node at prefix position
``i + 1`` (the order of `Node.walk()`; the root has none) before its parent uses it. Without
weights (None) the loss is exactly the symbolic tree.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_engine.export_codegen import module_docstring, render_module, script_module
from search_engine.export_latex import latex_document, weighted_latex
from search_engine.expression import (
    ExpressionError,
    Node,
    from_json,
    parse,
    to_json,
    to_prefix,
)
from search_engine.losses import KINDS

__all__ = [
    "FORMATS",
    "ExportFormat",
    "LearnedLossSpec",
    "check_weights",
    "default_filename",
    "export",
    "from_json_export",
    "meta_test_summary",
    "read_spec",
    "to_json_export",
    "to_latex_document",
    "to_torch_source",
    "to_torchscript",
    "weighted_latex",
    "write_export",
]

JSON_FORMAT = "lfl-learned-loss"
JSON_VERSION = 1
RESULT_FORMAT = "lfl-search-result"

#: The metric a search minimizes, per task kind (lower is better).
METRICS = {"classification": "error rate", "regression": "MSE"}
#: Baseline loss name -> task kind (the search uses cross-entropy exactly for classification).
_BASELINE_KINDS = {"cross_entropy": "classification", "squared_error": "regression"}


# --------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------


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
    floats (one per edge) or None for the plain symbolic loss.
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

    def __post_init__(self) -> None:
        _check_str("expression", self.expression)
        tree = parse(self.expression)  # ExpressionError (a ValueError) names the problem
        object.__setattr__(self, "expression", to_prefix(tree))
        object.__setattr__(self, "weights", check_weights(self.weights, tree))
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("dataset", "model", "baseline_loss", "metric"):
            _check_str(name, getattr(self, name))
        if self.meta_test is not None:
            _check_str("meta_test", self.meta_test)
        object.__setattr__(self, "fitness", _optional_float("fitness", self.fitness))
        object.__setattr__(
            self, "baseline_fitness", _optional_float("baseline_fitness", self.baseline_fitness)
        )

    @property
    def tree(self) -> Node:
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
        hof = _field(result, "hall_of_fame", list)
        if not hof:
            raise ValueError("the result's hall of fame is empty: the search found no valid loss to export")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= len(hof):
            raise ValueError(
                f"rank must be an integer between 1 and {len(hof)} (hall of fame size), got {rank!r}"
            )
        entry = hof[rank - 1]
        if not isinstance(entry, dict):
            raise ValueError(f"hall_of_fame[{rank - 1}] must be an object")
        expression = _field(entry, "expression", str, f"hall_of_fame[{rank - 1}]")
        task = _field(_field(result, "config", dict), "task", dict, "config")
        baseline = _field(result, "baseline_loss", str)
        if baseline not in _BASELINE_KINDS:
            raise ValueError(
                f"unknown baseline_loss {baseline!r}; expected one of {', '.join(_BASELINE_KINDS)}"
            )
        kind = _BASELINE_KINDS[baseline]
        meta = result.get("meta_test")
        meta = meta if isinstance(meta, dict) and meta.get("expression") == expression else None
        try:
            summary = meta_test_summary(meta) if meta else None
        except (TypeError, ValueError):  # a hand-edited meta_test: export without the summary
            meta = summary = None
        return cls(
            expression=expression,
            weights=entry.get("weights"),
            kind=kind,
            dataset=_field(task, "dataset", str, "config.task"),
            model=_field(task, "model", str, "config.task"),
            fitness=entry.get("fitness"),
            baseline_loss=baseline,
            baseline_fitness=result.get("baseline_fitness"),
            metric=(meta or {}).get("metric") or METRICS[kind],
            meta_test=summary,
        )


@functools.lru_cache(maxsize=256)
def _parse_cached(expression: str) -> Node:
    return parse(expression)


def _field(obj: dict, key: str, typ: type, where: str = "") -> Any:
    """obj[key], which must exist and have type `typ`."""
    name = f"{where}.{key}" if where else key
    if key not in obj:
        raise ValueError(f"missing field {name!r}")
    if not isinstance(obj[key], typ):
        raise ValueError(f"field {name!r} must be a {typ.__name__}, got {type(obj[key]).__name__}")
    return obj[key]


def meta_test_summary(meta: dict) -> str:
    """One line from result.json's meta_test (the form of `metatest.Comparison.summary`)."""

    def ms(m: Any, s: Any) -> str:
        return "n/a" if m is None else f"{m:.4f} ± {s or 0.0:.4f}"

    n = len(meta.get("seeds") or ())
    p = meta.get("p_value")
    learned = ms(meta.get("learned_mean"), meta.get("learned_std"))
    baseline = ms(meta.get("baseline_mean"), meta.get("baseline_std"))
    text = (
        f"test {meta.get('metric', 'metric')}: learned {learned} vs baseline {baseline} over {n} seeds; "
        f"learned better on {meta.get('wins', 0)}/{n}; paired t-test p = {'n/a' if p is None else f'{p:.3g}'}"
    )
    return text + (f" ({meta['steps']} training steps)" if meta.get("steps") else "")


# --------------------------------------------------------------------------------------------
# torch / TorchScript / LaTeX (rendered by export_codegen and export_latex)
# --------------------------------------------------------------------------------------------


def to_torch_source(spec: LearnedLossSpec) -> str:
    """A standalone Python file (imports only torch) defining ``LearnedLoss(torch.nn.Module)``."""
    return render_module(spec.tree, spec.weights, spec.kind, module_docstring(spec))


def to_torchscript(spec: LearnedLossSpec) -> bytes:
    """The torch module compiled by TorchScript, as ``torch.jit.save`` bytes (reduction "mean";
    assign ``loaded.reduction = "sum"`` or ``"none"`` after ``torch.jit.load`` to change it)."""
    return script_module(to_torch_source(spec))


def to_latex_document(spec: LearnedLossSpec) -> str:
    """A small standalone LaTeX document: the formula, the weighted formula, the symbols."""
    return latex_document(spec)


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def to_json_export(spec: LearnedLossSpec) -> dict[str, Any]:
    """A versioned JSON description; `from_json_export` reads it back."""
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "expression": spec.expression,
        "tree": to_json(spec.tree),
        "weights": None if spec.weights is None else list(spec.weights),
        "kind": spec.kind,
        "task": {"dataset": spec.dataset, "model": spec.model},
        "metric": spec.metric,
        "fitness": spec.fitness,
        "baseline": {"loss": spec.baseline_loss, "fitness": spec.baseline_fitness},
        "meta_test": spec.meta_test,
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
    expression = _field(data, "expression", str)
    tree = parse(expression)  # lets the ExpressionError (message and position) through
    if "tree" in data and data["tree"] is not None:
        try:
            stored = from_json(data["tree"])
        except ExpressionError as exc:
            raise ExpressionError(f"tree: {exc}") from exc
        if stored != tree:
            raise ValueError(f"'tree' does not match 'expression' ({to_prefix(stored)} vs {to_prefix(tree)})")
    task = _field(data, "task", dict)
    baseline = _field(data, "baseline", dict)
    return LearnedLossSpec(
        expression=expression,
        weights=data.get("weights"),
        kind=_field(data, "kind", str),
        dataset=_field(task, "dataset", str, "task"),
        model=_field(task, "model", str, "task"),
        fitness=data.get("fitness"),
        baseline_loss=_field(baseline, "loss", str, "baseline"),
        baseline_fitness=baseline.get("fitness"),
        metric=_field(data, "metric", str),
        meta_test=data.get("meta_test"),
    )


# --------------------------------------------------------------------------------------------
# Formats, dispatch, files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportFormat:
    """One export format: its file extension and how to render a spec to bytes."""

    name: str
    extension: str
    description: str
    render: Callable[[LearnedLossSpec], bytes]


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "torch",
            ".py",
            "standalone PyTorch module (imports only torch)",
            lambda s: to_torch_source(s).encode("utf-8"),
        ),
        ExportFormat("torchscript", ".pt", "TorchScript archive for torch.jit.load", to_torchscript),
        ExportFormat(
            "latex", ".tex", "LaTeX document with the formula", lambda s: to_latex_document(s).encode("utf-8")
        ),
        ExportFormat(
            "json",
            ".json",
            "versioned JSON, re-importable with from_json_export",
            lambda s: (json.dumps(to_json_export(s), indent=1, ensure_ascii=False) + "\n").encode("utf-8"),
        ),
    )
}


def _format(fmt: str) -> ExportFormat:
    if fmt not in FORMATS:
        known = ", ".join(f"{f.name} ({f.extension})" for f in FORMATS.values())
        raise ValueError(f"unknown export format {fmt!r}; known formats: {known}")
    return FORMATS[fmt]


def export(spec: LearnedLossSpec, fmt: str) -> bytes:
    """The file contents of `spec` in format `fmt` (a key of FORMATS)."""
    return _format(fmt).render(spec)


def read_spec(path: str | Path, rank: int = 1) -> LearnedLossSpec:
    """A spec from a search's result.json (entry `rank`) or from a JSON learned-loss export."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if isinstance(data, dict) and data.get("format") == JSON_FORMAT:
        if rank != 1:
            raise ValueError(f"{path} holds a single learned loss; rank must be 1, got {rank!r}")
        return from_json_export(data)
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT:
        raise ValueError(f"{path} is neither an lfl search result nor a learned-loss export")
    return LearnedLossSpec.from_result(data, rank)


def default_filename(rank: int, fmt: str) -> str:
    """e.g. ``learned_loss_rank1.py``."""
    return f"learned_loss_rank{rank}{_format(fmt).extension}"


def write_export(result_path: str | Path, rank: int, fmt: str, out_path: str | Path | None = None) -> Path:
    """Export hall-of-fame entry `rank` of result.json to `out_path` (atomically); return the path.

    `result_path` may also be a JSON learned-loss export (rank 1), to convert it to another format.
    Without `out_path`, or when it is an existing folder, the file is named by `default_filename`
    (next to the result, or in that folder). Every problem is a ValueError with a clear message.
    """
    fmt_info = _format(fmt)
    spec = read_spec(result_path, rank)
    data = fmt_info.render(spec)
    if out_path is None:
        out = Path(result_path).with_name(default_filename(rank, fmt))
    else:
        out = Path(out_path)
        if out.is_dir():
            out = out / default_filename(rank, fmt)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ValueError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out
