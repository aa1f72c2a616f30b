"""Exporters: generated torch / TorchScript files run in a fresh interpreter that cannot see the
project and match the engine's losses; JSON round trips; LaTeX; formats, ranks and errors."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import random
import subprocess
import sys
import warnings
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from search_engine import gp
from search_engine import primitives as P
from search_engine.export import (
    FORMATS,
    LearnedLossSpec,
    export,
    from_json_export,
    read_spec,
    to_json_export,
    to_latex_document,
    to_torch_source,
    to_torchscript,
    weighted_latex,
    write_export,
)
from search_engine.export_codegen import _TORCH_EXPRESSIONS, load_generated
from search_engine.expression import CROSS_ENTROPY, SQUARED_ERROR, ExpressionError, Node, parse, to_prefix
from search_engine.losses import REDUCTIONS, make_loss
from search_engine.symbolic import to_latex

# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

#: Every primitive, both constants, and constant-only subtrees (log(-1), tanh(1)).
ALL_OPS = parse(
    "add(div(sign(y), log(f)), max(min(sqrt(f), tanh(mul(1, y))), "
    "abs(sub(square(f), add(log(-1), tanh(1))))))"
)


def test_cases_cover_every_primitive_and_the_exporter_knows_them_all():
    assert {n.op for _, n in ALL_OPS.walk()} == set(P.PRIMITIVES) | set(P.TERMINALS)
    assert set(_TORCH_EXPRESSIONS) == set(P.PRIMITIVES)
    ops = {n.op for c in CASES for _, n in c.tree.walk()}
    assert {"div", "log", "sqrt", "min", "max", "sign"} <= ops


def test_torchscript_export_does_not_warn():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = to_torchscript(spec_for(CASES[0]))
    assert data[:2] == b"PK"  # a zip archive
    assert [str(w.message) for w in caught] == []


def _random_weights(tree: Node, seed: int) -> tuple[float, ...]:
    rng = random.Random(seed)
    return tuple(rng.uniform(-1.5, 1.5) for _ in range(tree.size() - 1))  # full-precision floats


def _random_trees() -> list[Node]:
    rng = random.Random(12345)
    trees = []
    for height, method in ((3, "grow"), (3, "full"), (4, "grow")):
        trees.append(gp.repair(rng, gp.random_tree(rng, height, method), max_height=10))
    return trees


@dataclass(frozen=True)
class Case:
    name: str
    tree: Node
    kind: str
    weights: tuple[float, ...] | None


def _cases() -> list[Case]:
    cases = [
        Case("ce_plain", CROSS_ENTROPY, "classification", None),
        Case("ce_weighted", CROSS_ENTROPY, "classification", _random_weights(CROSS_ENTROPY, 1)),
        Case("se_plain", SQUARED_ERROR, "regression", None),
        Case("se_weighted", SQUARED_ERROR, "regression", _random_weights(SQUARED_ERROR, 2)),
        Case("allops_cls_plain", ALL_OPS, "classification", None),
        Case("allops_cls_weighted", ALL_OPS, "classification", _random_weights(ALL_OPS, 3)),
        Case("allops_reg_plain", ALL_OPS, "regression", None),
        Case("allops_reg_weighted", ALL_OPS, "regression", _random_weights(ALL_OPS, 4)),
    ]
    for i, tree in enumerate(_random_trees()):
        kind = "classification" if i % 2 == 0 else "regression"
        cases.append(Case(f"random{i}_plain", tree, kind, None))
        cases.append(Case(f"random{i}_weighted", tree, kind, _random_weights(tree, 10 + i)))
    return cases


CASES = _cases()


def spec_for(case: Case, **overrides) -> LearnedLossSpec:
    fields = dict(
        expression=to_prefix(case.tree),
        weights=case.weights,
        kind=case.kind,
        dataset="digits",
        model="mlp",
        fitness=0.04,
        baseline_loss="cross_entropy" if case.kind == "classification" else "squared_error",
        baseline_fitness=0.05,
        metric="error rate" if case.kind == "classification" else "MSE",
        meta_test=None,
    )
    return LearnedLossSpec(**{**fields, **overrides})


# --------------------------------------------------------------------------------------------
# Reference: an independent weighted evaluator (walk + per-edge scaling, keyed by path)
# --------------------------------------------------------------------------------------------


def reference_loss(tree: Node, weights, kind: str, reduction: str):
    if weights is None:
        return make_loss(tree, kind, reduction)
    edge_weight = {path: weights[i - 1] for i, (path, _) in enumerate(tree.walk()) if i > 0}

    def value(path, y, f):
        node = tree.at(path)
        if node.op == P.TARGET:
            out = y
        elif node.op == P.PREDICTION:
            out = f
        elif node.op in P.CONSTANTS:
            out = torch.tensor(P.CONSTANTS[node.op], dtype=f.dtype)
        else:
            out = P.PRIMITIVES[node.op].torch_fn(
                *(value(path + (j,), y, f) for j in range(len(node.children)))
            )
        return out * edge_weight[path] if path else out

    def loss(outputs, targets):
        if kind == "classification":
            f = torch.softmax(outputs, dim=-1)
            y = F.one_hot(targets, outputs.shape[-1]).to(f.dtype)
        else:
            f = outputs if outputs.dim() == 2 else outputs.unsqueeze(-1)
            y = targets.reshape(f.shape).to(f.dtype)
        per_sample = torch.broadcast_to(value((), y, f), f.shape).sum(dim=-1)
        return {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]

    return loss


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    d = torch.float64
    x = torch.randn(32, 5, generator=g, dtype=d)
    logits = torch.randn(6, 4, generator=g, dtype=d) * 3
    logits[0] = torch.tensor([20.0, -20.0, 0.0, 5.0])  # probabilities below the 1e-7 protection
    labels = torch.randint(0, 4, (6,), generator=g)
    labels[0] = 1  # the true class of row 0 has probability ~4e-18: cross-entropy hits the clamp
    pred1 = torch.randn(6, generator=g, dtype=d)
    pred1[0] = 0.0  # log and sqrt clamp here
    return {
        "logits": logits,
        "labels": labels,
        "pred1": pred1,
        "targ1": torch.randn(6, generator=g, dtype=d),
        "predk": torch.randn(6, 3, generator=g, dtype=d),
        "targk": torch.randn(6, 3, generator=g, dtype=d),
        "pred_col": torch.randn(6, 1, generator=g, dtype=d),
        "targ_flat": torch.randn(6, generator=g, dtype=d),
        "train_x": x,
        "train_labels": (x @ torch.randn(5, 3, generator=g, dtype=d)).argmax(dim=-1),
        "train_y": x @ torch.randn(5, generator=g, dtype=d) + 0.1,
    }


VARIANTS = {
    "classification": [("cls", "logits", "labels")],
    "regression": [("r1", "pred1", "targ1"), ("rk", "predk", "targk"), ("rmix", "pred_col", "targ_flat")],
}
TRAINED = ("ce_plain", "se_plain")

# Runs in `python -I` with cwd = the export folder: sees neither the project nor PYTHONPATH.
CHILD = r"""
import importlib.util, json, sys
import torch


class BlockProject:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "search_engine":
            raise ImportError("the project must not be importable here")
        return None


sys.meta_path.insert(0, BlockProject())
manifest = json.load(open("manifest.json"))
inputs = torch.load("inputs.pt")
out, info = {}, {"isolated": sys.flags.isolated, "cases": {}}


def load(name):
    spec = importlib.util.spec_from_file_location(name, name + ".py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def message(fn):
    try:
        fn()
    except Exception as exc:
        return type(exc).__name__ + ": " + str(exc)
    return None


def train(loss_fn, kind):
    torch.manual_seed(0)
    x = inputs["train_x"]
    model = torch.nn.Linear(5, 3 if kind == "classification" else 1).double()
    target = inputs["train_labels"] if kind == "classification" else inputs["train_y"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        pred = model(x) if kind == "classification" else model(x).squeeze(-1)
        loss = loss_fn(pred, target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


for case in manifest["cases"]:
    name, kind = case["name"], case["kind"]
    module = load(name)
    scripted = torch.jit.load(name + ".pt")
    record = {"WEIGHTS": module.WEIGHTS, "EXPRESSION": module.EXPRESSION, "KIND": module.KIND,
              "script_default_reduction": scripted.reduction}
    for variant, a, b in case["variants"]:
        for reduction in ("mean", "sum", "none"):
            eager = module.LearnedLoss(reduction)
            out[name + "/" + variant + "/" + reduction + "/eager"] = eager(inputs[a], inputs[b])
            scripted.reduction = reduction
            out[name + "/" + variant + "/" + reduction + "/script"] = scripted(inputs[a], inputs[b])
    if module.WEIGHTS is not None:
        out[name + "/buffer"] = module.LearnedLoss().weights
        out[name + "/script_buffer"] = scripted.weights
    if name in manifest["train"]:
        record["train_eager"] = train(module.LearnedLoss(), kind)
        scripted.reduction = "mean"
        record["train_script"] = train(scripted, kind)
        record["bad_reduction"] = message(lambda: module.LearnedLoss("avg"))
        scripted.reduction = "avg"
        a, b = case["variants"][0][1:]
        record["script_bad_reduction"] = message(lambda: scripted(inputs[a], inputs[b]))
        if kind == "classification":
            record["bad_target"] = message(lambda: module.LearnedLoss()(inputs["logits"], inputs["logits"]))
        else:
            record["bad_target"] = message(lambda: module.LearnedLoss()(inputs["predk"], inputs["pred1"]))
    info["cases"][name] = record

info["project_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "search_engine")
torch.save(out, "outputs.pt")
json.dump(info, open("info.json", "w"))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export every case (.py and .pt) and run them all in ONE fresh isolated interpreter."""
    folder = tmp_path_factory.mktemp("exported")
    sources = {}
    for case in CASES:
        spec = spec_for(case)
        sources[case.name] = to_torch_source(spec)
        (folder / f"{case.name}.py").write_text(sources[case.name], encoding="utf-8")
        (folder / f"{case.name}.pt").write_bytes(to_torchscript(spec))
    manifest = {
        "cases": [{"name": c.name, "kind": c.kind, "variants": VARIANTS[c.kind]} for c in CASES],
        "train": list(TRAINED),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    inputs = _inputs()
    torch.save(inputs, folder / "inputs.pt")
    (folder / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-I", "child.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    outputs = torch.load(folder / "outputs.pt")
    info = json.loads((folder / "info.json").read_text())
    return {"outputs": outputs, "info": info, "inputs": inputs, "sources": sources}


def test_child_interpreter_is_isolated_from_the_project(exported):
    assert exported["info"]["isolated"] == 1
    assert exported["info"]["project_modules"] == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_generated_source_imports_only_torch(case, exported):
    module = ast.parse(exported["sources"][case.name])
    imported = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"torch"}
    assert not any(isinstance(node, ast.Lambda) for node in ast.walk(module))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_exported_module_and_torchscript_match_the_engine(case, exported):
    outputs, inputs = exported["outputs"], exported["inputs"]
    for variant, a, b in VARIANTS[case.kind]:
        for reduction in REDUCTIONS:
            want = reference_loss(case.tree, case.weights, case.kind, reduction)(inputs[a], inputs[b])
            for how in ("eager", "script"):
                got = outputs[f"{case.name}/{variant}/{reduction}/{how}"]
                assert got.dtype == torch.float64 and got.shape == want.shape, (variant, reduction, how)
                torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_weights_and_metadata_survive_at_full_precision(case, exported):
    record = exported["info"]["cases"][case.name]
    assert record["EXPRESSION"] == to_prefix(case.tree) and record["KIND"] == case.kind
    assert record["script_default_reduction"] == "mean"
    if case.weights is None:
        assert record["WEIGHTS"] is None
        return
    assert tuple(record["WEIGHTS"]) == case.weights  # exact: repr keeps every bit
    want = torch.tensor(case.weights, dtype=torch.float64)
    assert torch.equal(exported["outputs"][f"{case.name}/buffer"], want)
    assert torch.equal(exported["outputs"][f"{case.name}/script_buffer"], want)


def test_weights_of_one_equal_the_symbolic_loss():
    inputs = _inputs()
    ones = tuple(1.0 for _ in range(ALL_OPS.size() - 1))
    for reduction in REDUCTIONS:
        got = reference_loss(ALL_OPS, ones, "classification", reduction)(inputs["logits"], inputs["labels"])
        want = make_loss(ALL_OPS, "classification", reduction)(inputs["logits"], inputs["labels"])
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_shared_subtree_objects_get_their_own_weights(tmp_path):
    shared = Node("log", (Node("sub", (Node("y"), Node("f"))),))
    tree = Node("add", (shared, shared))  # the same object twice: positions, not ids, matter
    weights = (0.5, 2.0, 3.0, 4.0, -1.0, 0.25, 1.5, 2.5)
    module = load_generated(to_torch_source(spec_for(Case("s", tree, "regression", weights))), tmp_path)
    inputs = _inputs()
    for reduction in REDUCTIONS:
        got = module.LearnedLoss(reduction)(inputs["predk"], inputs["targk"])
        want = reference_loss(tree, weights, "regression", reduction)(inputs["predk"], inputs["targk"])
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", TRAINED)
def test_exported_loss_trains_a_linear_model(name, exported):
    record = exported["info"]["cases"][name]
    for key in ("train_eager", "train_script"):
        losses = record[key]
        assert losses[-1] < 0.8 * losses[0], (key, losses)
    assert record["train_eager"] == pytest.approx(record["train_script"], rel=1e-9)


@pytest.mark.parametrize("name", TRAINED)
def test_exported_loss_rejects_bad_arguments(name, exported):
    record = exported["info"]["cases"][name]
    assert record["bad_reduction"].startswith("ValueError: reduction must be 'mean', 'sum' or 'none'")
    assert "reduction must be" in record["script_bad_reduction"]
    assert record["bad_target"].startswith("ValueError: LearnedLoss:")


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
    assert spec.meta_test.startswith(
        "test error rate: learned 0.1500 ± 0.0700 vs baseline 0.2500 ± 0.0700 over 2 seeds"
    )
    second = LearnedLossSpec.from_result(result_dict(), rank=2)
    assert (
        second.expression == to_prefix(CROSS_ENTROPY) and second.weights is None and second.meta_test is None
    )
    regression = {**result_dict(), "baseline_loss": "squared_error", "meta_test": None}
    assert LearnedLossSpec.from_result(regression).kind == "regression"
    assert LearnedLossSpec.from_result(regression).metric == "MSE"


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
