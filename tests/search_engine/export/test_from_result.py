"""Exporting from a search result: ranks, weights, meta-test, formats, files and validation errors."""

from __future__ import annotations

import ast
import dataclasses
import json

import pytest

from search_engine.export.formats import (
    FORMATS,
    export,
    read_spec,
    to_latex_document,
    to_torch_source,
    write_export,
)
from search_engine.export.json_export import from_json_export
from search_engine.export.spec import LearnedLossSpec
from search_engine.expr.tree import CROSS_ENTROPY, to_prefix

from .export_cases import CASES, spec_for

# --------------------------------------------------------------------------------------------
# result.json, formats, files
# --------------------------------------------------------------------------------------------


def result_dict(weights=None) -> dict:
    """A small result.json in the format of `SearchResult.to_dict`."""

    def entry(expr, fitness, **extra):
        return {
            "expression": expr,
            "canonical_key": "k",
            "latex": "l",
            "fitness": fitness,
            "size": 0,
            "generation": 0,
            **extra,
        }

    return {
        "format": "lfl-search-result",
        "version": 1,
        "config": {"task": {"dataset": "digits", "model": "mlp", "kind": None}},
        "status": "completed",
        "hall_of_fame": [
            entry("square(mul(y, log(f)))", 0.02, weights=weights),
            entry(to_prefix(CROSS_ENTROPY), 0.05),
        ],
        "baseline_loss": "cross_entropy",
        "baseline_fitness": 0.05,
        "meta_test": {
            "rank": 1,
            "expression": "square(mul(y, log(f)))",
            "steps": 40,
            "metric": "error rate",
            "seeds": [1003, 1004],
            "learned": [0.1, 0.2],
            "baseline": [0.2, 0.3],
            "learned_mean": 0.15,
            "learned_std": 0.07,
            "baseline_mean": 0.25,
            "baseline_std": 0.07,
            "wins": 2,
            "t_statistic": None,
            "p_value": None,
        },
    }


def test_from_result_reads_ranks_weights_and_meta_test():
    spec = LearnedLossSpec.from_result(result_dict(weights=[0.5, 1.5, 2.5, 3.5]))
    assert spec.expression == "square(mul(y, log(f)))" and spec.weights == (0.5, 1.5, 2.5, 3.5)
    assert (spec.kind, spec.dataset, spec.model, spec.metric) == (
        "classification",
        "digits",
        "mlp",
        "error rate",
    )
    assert (spec.fitness, spec.baseline_loss, spec.baseline_fitness) == (0.02, "cross_entropy", 0.05)
    # a record meta-tested at the search's rate alone (stored before tuning was the default) says so first
    assert spec.meta_test.startswith(
        "The learned loss was not compared with cross-entropy at its best learning rate"
    )
    assert (
        "At the search's learning rate (the paper's protocol): test error rate: learned 0.1500 ± 0.0700 vs "
        "baseline 0.2500 ± 0.0700 over 2 seeds" in spec.meta_test
    )
    second = LearnedLossSpec.from_result(result_dict(), rank=2)
    assert (
        second.expression == to_prefix(CROSS_ENTROPY) and second.weights is None and second.meta_test is None
    )
    regression = {**result_dict(), "baseline_loss": "squared_error", "meta_test": None}
    assert LearnedLossSpec.from_result(regression).kind == "regression"
    assert LearnedLossSpec.from_result(regression).metric == "MSE"


def tuned_result(p_value, rescales_baseline=None) -> dict:
    """result_dict whose meta-test also compared each loss at its own best learning rate."""
    result = result_dict()
    meta = result["meta_test"]
    meta["tuned_lr"] = {**{k: meta[k] for k in ("metric", "seeds", "wins", "t_statistic")},
                        "learned": [0.11, 0.12], "baseline": [0.12, 0.13], "learned_mean": 0.115,
                        "learned_std": 0.007, "baseline_mean": 0.125, "baseline_std": 0.007, "p_value": p_value,
                        "learned_lr": 0.0316, "baseline_lr": 0.316, "tried": {}}
    meta["rescales_baseline"] = rescales_baseline
    return result


@pytest.mark.parametrize(("p_value", "rescale", "verdict"), [
    (0.4, 1.56, "The learned loss is no better than cross-entropy at its best learning rate (p = 0.4). It only "
                "rescales cross-entropy: its gradient is 1.56 times cross-entropy's"),
    (0.01, None, "The learned loss is better than cross-entropy at its best learning rate (p = 0.01)."),
])
def test_the_exported_docstring_leads_with_the_verdict_at_tuned_rates(p_value, rescale, verdict):
    spec = LearnedLossSpec.from_result(tuned_result(p_value, rescale))
    assert spec.meta_test.startswith(verdict)
    doc = " ".join(ast.get_docstring(ast.parse(to_torch_source(spec))).split())  # wrapped over lines
    said = doc.index(f"Meta-test: {verdict}")
    tuned = doc.index("At each loss's own best learning rate (learned 0.0316, baseline 0.316): test error rate: "
                      "learned 0.1150 ± 0.0070 vs baseline 0.1250 ± 0.0070 over 2 seeds")
    fixed = doc.index("At the search's learning rate (the paper's protocol): test error rate: learned 0.1500")
    assert said < tuned < fixed and "Each model trained 40 steps" in doc
    assert verdict in " ".join(to_latex_document(spec).split())


@pytest.mark.parametrize("rank", [0, 3, -1, True, "1"])
def test_from_result_rejects_bad_ranks(rank):
    with pytest.raises(ValueError, match="rank must be an integer between 1 and 2"):
        LearnedLossSpec.from_result(result_dict(), rank)


def test_from_result_missing_fields_are_clear():
    with pytest.raises(ValueError, match="missing field 'hall_of_fame'"):
        LearnedLossSpec.from_result({"format": "lfl-search-result"})
    with pytest.raises(ValueError, match="hall of fame is empty"):
        LearnedLossSpec.from_result({**result_dict(), "hall_of_fame": []})
    with pytest.raises(ValueError, match="missing field 'config.task.model'"):
        LearnedLossSpec.from_result({**result_dict(), "config": {"task": {"dataset": "digits"}}})
    with pytest.raises(ValueError, match="missing field 'baseline_loss'"):
        LearnedLossSpec.from_result({k: v for k, v in result_dict().items() if k != "baseline_loss"})
    with pytest.raises(ValueError, match="4 edge weight"):
        LearnedLossSpec.from_result(result_dict(weights=[1.0]))
    with pytest.raises(ValueError, match="not an lfl search result"):
        LearnedLossSpec.from_result({**result_dict(), "format": "other"})


def test_formats_and_unknown_format():
    assert {n: f.extension for n, f in FORMATS.items()} == {
        "torch": ".py",
        "torchscript": ".pt",
        "latex": ".tex",
        "json": ".json",
    }
    spec = spec_for(CASES[0])
    with pytest.raises(
        ValueError,
        match=r"unknown export format 'onnx'; known formats: torch \(\.py\), "
        r"torchscript \(\.pt\), latex \(\.tex\), json \(\.json\)",
    ):
        export(spec, "onnx")
    assert export(spec, "torch").decode() == to_torch_source(spec)
    assert export(spec, "latex").decode() == to_latex_document(spec)


def test_write_export_from_result_and_from_json_export(tmp_path):
    result = tmp_path / "result.json"
    result.write_text(json.dumps(result_dict(weights=[0.5, 1.5, 2.5, 3.5])))
    out = write_export(result, 1, "json", tmp_path / "out" / "loss.json")
    assert out == tmp_path / "out" / "loss.json"
    spec = from_json_export(json.loads(out.read_text()))
    assert spec == LearnedLossSpec.from_result(result_dict(weights=[0.5, 1.5, 2.5, 3.5]))
    default = write_export(result, 2, "torch")
    assert (
        default == tmp_path / "learned_loss_rank2.py"
        and "EXPRESSION = 'mul(-1, mul(y, log(f)))'" in default.read_text()
    )
    again = write_export(out, 1, "latex", tmp_path / "loss.tex")  # a JSON export converts too
    assert r"\documentclass{article}" in again.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "learned_loss_rank2.py",
        "loss.tex",
        "out",
        "result.json",
    ]
    with pytest.raises(ValueError, match="rank must be an integer between 1 and 2"):
        write_export(result, 5, "torch", tmp_path / "x.py")
    with pytest.raises(ValueError, match="unknown export format"):
        write_export(result, 1, "pdf", tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="cannot read"):
        write_export(tmp_path / "missing.json", 1, "torch", tmp_path / "x.py")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_spec(tmp_path / "bad.json")
    assert not (tmp_path / "x.py").exists()
    into_folder = write_export(result, 1, "torchscript", tmp_path / "out")
    assert into_folder == tmp_path / "out" / "learned_loss_rank1.pt" and into_folder.read_bytes()[:2] == b"PK"
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="cannot write"):
        write_export(result, 1, "json", tmp_path / "file" / "below.json")


def test_spec_validation():
    case = CASES[0]
    with pytest.raises(ValueError, match="kind must be one of"):
        spec_for(case, kind="ranking")
    with pytest.raises(ValueError, match="weights\\[1\\] must be a number"):
        spec_for(case, weights=[1.0, "2", 1.0, 1.0, 1.0])
    spaced = spec_for(case, expression="mul( -1 , mul(y,log(f)))", weights=[1, 2, 3, 4, 5])
    assert spaced.expression == to_prefix(CROSS_ENTROPY) and spaced.weights == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert dataclasses.replace(spaced, weights=None).weights is None
