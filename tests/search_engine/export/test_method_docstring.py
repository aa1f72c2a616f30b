"""The exported files name the method that learned the loss (not EvoMAL for every one), and the
JSON export keeps it; exports from before it was recorded still read (as EvoMAL's or ML3's)."""

from __future__ import annotations

import ast
import json

import pytest
import torch

from search_engine import catalog
from search_engine.export.formats import export
from search_engine.export.json_export import from_json_export, to_json_export
from search_engine.export.spec import LearnedLossSpec
from search_engine.expr.network import NetworkLoss
from search_engine.expr.tree import parse
from search_engine.methods.taylorglo_poly import POLYNOMIAL_EXPRESSION

CE = "mul(-1, mul(y, log(f)))"


def network() -> dict:
    g = torch.Generator().manual_seed(4)
    widths = (2, 5, 1)
    return NetworkLoss(layers=[(torch.randn(b, a, generator=g, dtype=torch.float64) / a ** 0.5).tolist()
                               for a, b in zip(widths[:-1], widths[1:])]).to_dict()


def result_of(method: str, entry: dict) -> dict:
    """A search's result.json as the engine writes it, with one hall-of-fame entry."""
    return {"format": "lfl-search-result", "baseline_loss": "cross_entropy", "baseline_fitness": 0.2,
            "config": {"method": method, "task": {"dataset": "digits", "model": "mlp"}},
            "hall_of_fame": [{"fitness": 0.1, "weights": None, **entry}]}


def taylorglo_result() -> dict:
    edges = parse(POLYNOMIAL_EXPRESSION).size() - 1
    return result_of("taylorglo", {"expression": POLYNOMIAL_EXPRESSION, "weights": [0.25 * (i % 5) for i in range(edges)]})


def ml3_result() -> dict:
    return result_of("ml3", {"expression": "a network", "network": network()})


def docstring(spec: LearnedLossSpec) -> str:
    return ast.get_docstring(ast.parse(export(spec, "torch").decode()))


def test_a_taylorglo_loss_says_taylorglo_learned_it():
    spec = LearnedLossSpec.from_result(taylorglo_result())
    doc = docstring(spec)
    assert spec.method == "taylorglo"
    assert doc.splitlines()[0] == "Learned loss function, exported by lfl: learned by TaylorGLO."
    assert doc.splitlines()[1].startswith("TaylorGLO: CMA-ES over the coefficients") and "EvoMAL" not in doc
    assert "learned by TaylorGLO" in export(spec, "latex").decode().splitlines()[0]


def test_an_ml3_loss_says_ml3_learned_it():
    spec = LearnedLossSpec.from_result(ml3_result())
    doc = docstring(spec)
    assert spec.method == "ml3"
    assert doc.splitlines()[0] == "Learned loss function, exported by lfl: a network loss learned by ML3."
    assert doc.splitlines()[1].startswith("ML3: a small neural network as the loss") and "EvoMAL" not in doc
    assert "learned by ML3" in export(spec, "latex").decode().splitlines()[0]


@pytest.mark.parametrize("method", ["evomal", "gplfl"])
def test_a_genetic_programming_loss_names_its_own_method(method):
    doc = docstring(LearnedLossSpec.from_result(result_of(method, {"expression": CE})))
    assert doc.splitlines()[0] == f"Learned loss function, exported by lfl: learned by {catalog.METHODS[method].label}."


def test_the_json_export_keeps_the_method_and_an_old_one_reads_as_before():
    for result, method in ((taylorglo_result(), "taylorglo"), (ml3_result(), "ml3")):
        spec = LearnedLossSpec.from_result(result)
        data = json.loads(export(spec, "json"))
        assert data["method"] == method and from_json_export(data) == spec
    # written before the method was recorded: an expression was EvoMAL's, a network ML3's
    old_expression = {k: v for k, v in to_json_export(LearnedLossSpec.from_result(result_of("gplfl", {
        "expression": CE}))).items() if k != "method"}
    assert from_json_export(old_expression).method == "evomal"
    old_network = {k: v for k, v in to_json_export(LearnedLossSpec.from_result(ml3_result())).items() if k != "method"}
    assert from_json_export(old_network).method == "ml3"
    old_result = result_of("evomal", {"expression": CE})
    del old_result["config"]["method"]
    assert LearnedLossSpec.from_result(old_result).method == "evomal"


def test_an_unknown_method_is_refused_by_name():
    data = to_json_export(LearnedLossSpec.from_result(result_of("evomal", {"expression": CE})))
    with pytest.raises(ValueError, match=f"method must be one of {', '.join(catalog.METHODS)}, got 'neat'"):
        from_json_export({**data, "method": "neat"})
