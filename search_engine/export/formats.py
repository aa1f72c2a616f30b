"""Exporting a learned loss as files a researcher drops into their own PyTorch code.

Each format of the catalogue renders a `LearnedLossSpec` (see `export.spec`):

- ``torch``: a standalone ``.py`` file importing only torch, defining ``LearnedLoss(nn.Module)``
  (for a network loss, with its weights embedded: `network_source`);
- ``torchscript``: that module compiled with ``torch.jit.script`` (``.pt``, for ``torch.jit.load``);
- ``latex``: a small LaTeX document with the formula, the weighted formula and the symbols;
- ``json``: a versioned description that `json_export.from_json_export` reads back into the engine.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from search_engine import catalog
from search_engine.export.json_export import JSON_FORMAT, from_json_export, to_json_export
from search_engine.export.latex import latex_document
from search_engine.export.network_source import render_network_module
from search_engine.export.spec import RESULT_FORMAT, LearnedLossSpec
from search_engine.export.torch_source import module_docstring, render_module, script_module


def to_torch_source(spec: LearnedLossSpec) -> str:
    """A standalone Python file (imports only torch) defining ``LearnedLoss(torch.nn.Module)``."""
    if spec.network is not None:
        return render_network_module(spec)
    return render_module(spec.tree, spec.weights, spec.kind, module_docstring(spec))


def to_torchscript(spec: LearnedLossSpec) -> bytes:
    """The torch module compiled by TorchScript, as ``torch.jit.save`` bytes (reduction "mean";
    assign ``loaded.reduction = "sum"`` or ``"none"`` after ``torch.jit.load`` to change it)."""
    return script_module(to_torch_source(spec))


def to_latex_document(spec: LearnedLossSpec) -> str:
    """A small standalone LaTeX document: the formula, the weighted formula, the symbols."""
    return latex_document(spec)


@dataclass(frozen=True)
class ExportFormat:
    """One export format: the catalogue's facts about it and how to render a spec to bytes."""

    name: str
    extension: str
    description: str
    render: Callable[[LearnedLossSpec], bytes]


def _json_bytes(spec: LearnedLossSpec) -> bytes:
    return (json.dumps(to_json_export(spec), indent=1, ensure_ascii=False) + "\n").encode("utf-8")


#: Format name -> renderer; the names, extensions and descriptions are the catalogue's.
RENDERERS: dict[str, Callable[[LearnedLossSpec], bytes]] = {
    "torch": lambda s: to_torch_source(s).encode("utf-8"),
    "torchscript": lambda s: to_torchscript(s),
    "latex": lambda s: to_latex_document(s).encode("utf-8"),
    "json": _json_bytes,
}


FORMATS: dict[str, ExportFormat] = {
    name: ExportFormat(name, info.extension, info.description, RENDERERS[name])
    for name, info in catalog.EXPORT_FORMATS.items()
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
