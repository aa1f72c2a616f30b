"""Exported text: the module docstring, LaTeX (plain and weighted, the document) and the JSON round trip."""

from __future__ import annotations

import ast
import json

import pytest

from search_engine.export.formats import export, to_latex_document, to_torch_source
from search_engine.export.json_export import from_json_export, to_json_export
from search_engine.expr.formula import to_latex, weighted_latex
from search_engine.expr.tree import ExpressionError, parse, to_prefix

from .export_cases import CASES, Case, spec_for

# --------------------------------------------------------------------------------------------
# Docstring, LaTeX
# --------------------------------------------------------------------------------------------


def test_torch_source_docstring_describes_the_loss():
    case = CASES[1]  # ce_weighted
    spec = spec_for(case, meta_test="test error rate: learned 0.1 vs baseline 0.2", dataset="my_data")
    source = to_torch_source(spec)
    doc = ast.get_docstring(ast.parse(source))
    for piece in (
        spec.expression,
        to_latex(case.tree),
        "classification",
        "'my_data'",
        "'mlp'",
        "validation error rate: 0.0400",
        "baseline cross_entropy: 0.0500",
        "Meta-test: test error rate",
        "Usage:",
        "criterion = LearnedLoss()",
        weighted_latex(case.tree, case.weights),
    ):
        assert piece in doc, piece
    assert f"WEIGHTS = [\n    {case.weights[0]!r}, {case.weights[1]!r}" in source
    assert "Meta-test" not in ast.get_docstring(ast.parse(to_torch_source(spec_for(CASES[0]))))


def test_user_text_cannot_break_out_of_the_docstring():
    spec = spec_for(CASES[0], dataset='evil"""\\', model="m\x00", meta_test='"""; import os')
    source = to_torch_source(spec)
    module = ast.parse(source)  # still valid Python
    assert [type(n).__name__ for n in module.body][:2] == ["Expr", "Import"]


def test_weighted_latex_rounds_weights_and_mirrors_the_tree():
    tree = parse("mul(-1, log(f))")
    text = weighted_latex(tree, (0.123456789, -2.0, 3e-9))
    assert text == (
        r"0.1235 \cdot \left(-1\right) \cdot "
        r"\left(-2\right) \cdot \log\left|3 \times 10^{-9} \cdot f(x)\right|"
    )
    assert weighted_latex(tree, None) == to_latex(tree)


def test_latex_document_contains_formula_weights_and_symbols():
    case = CASES[5]  # allops_cls_weighted
    doc = to_latex_document(spec_for(case, dataset="my_data%", meta_test="learned better"))
    for piece in (
        r"\documentclass{article}",
        r"\begin{document}",
        r"\end{document}",
        to_latex(case.tree),
        weighted_latex(case.tree, case.weights),
        r"\texttt{my\_data\%}",
        "protected logarithm",
        "protected square root",
        "division",
        "one-hot",
        "softmax",
        "Meta-test: learned better",
        f"% expression: {to_prefix(case.tree)}",
    ):
        assert piece in doc, piece
    assert f"{case.weights[0]:.4g}" in doc
    plain = to_latex_document(spec_for(CASES[2]))  # se_plain: no weighted form, no log symbol
    assert (
        "weighted form" not in plain and "protected logarithm" not in plain and "regression target" in plain
    )


def test_exports_print_the_loss_simplified_for_its_task():
    tree = parse("mul(mul(-1, sign(y)), log(abs(f)))")  # cross-entropy, written the long way
    case = Case("ce_long", tree, "classification", None)
    doc = ast.get_docstring(ast.parse(to_torch_source(spec_for(case))))
    assert "Simplified for classification (the same loss for this task):\n    -y*log(f)" in doc
    assert r"\ell\bigl(y, f(x)\bigr) = - y \log{\left(f(x) \right)}" in to_latex_document(spec_for(case))
    regression = ast.get_docstring(ast.parse(to_torch_source(spec_for(Case("se", parse("square(abs(sub(f, y)))"),
                                                                                "regression", None)))))
    assert "Simplified for regression (the same loss for this task):\n    f**2 - 2*f*y + y**2" in regression


# --------------------------------------------------------------------------------------------
# JSON export
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [CASES[0], CASES[5], CASES[-1]], ids=lambda c: c.name)
def test_json_export_round_trips(case):
    spec = spec_for(case, meta_test="test MSE: learned 1.0 ± 0.1", baseline_fitness=None)
    data = json.loads(export(spec, "json"))
    assert data == to_json_export(spec)
    assert data["format"] == "lfl-learned-loss" and data["version"] == 1
    assert data["tree"]["op"] == case.tree.op and data["task"] == {"dataset": "digits", "model": "mlp"}
    assert from_json_export(data) == spec


def test_json_export_errors_are_clear():
    good = to_json_export(spec_for(CASES[1]))
    with pytest.raises(ValueError, match="not an lfl learned-loss export"):
        from_json_export({**good, "format": "something"})
    with pytest.raises(
        ValueError, match="unsupported learned-loss export version 2; this lfl reads version 1"
    ):
        from_json_export({**good, "version": 2})
    with pytest.raises(ExpressionError, match="unknown symbol 'lg'.*did you mean 'log'") as info:
        from_json_export({**good, "expression": "mul(-1, mul(y, lg(f)))", "tree": None})
    assert info.value.position == 15
    with pytest.raises(ValueError, match=r"weights has 2 value\(s\), but the tree has 6 nodes and so 5 edge"):
        from_json_export({**good, "weights": [1.0, 2.0]})
    with pytest.raises(ValueError, match="weights\\[0\\] must be finite"):
        from_json_export({**good, "weights": [float("nan")] * 5})
    with pytest.raises(ValueError, match="'tree' does not match 'expression'"):
        from_json_export({**good, "tree": {"op": "f"}})
    with pytest.raises(ValueError, match="missing field 'task.model'"):
        from_json_export({**good, "task": {"dataset": "digits"}})
    with pytest.raises(ValueError, match="must be a JSON object"):
        from_json_export([good])


