"""Generated torch / TorchScript files, run in a fresh interpreter that cannot see the project, match the engine's losses."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

from search_engine.export.formats import (
    to_torch_source,
    to_torchscript,
)
from search_engine.export.torch_source import load_generated
from search_engine.expr import primitives as P
from search_engine.expr.losses import REDUCTIONS, make_loss
from search_engine.expr.tree import Node, to_prefix

from .export_cases import ALL_OPS, CASES, Case, spec_for


def test_cases_cover_every_primitive_and_the_exporter_writes_the_tables_text():
    assert {n.op for _, n in ALL_OPS.walk()} == set(P.PRIMITIVES) | set(P.TERMINALS)
    source = to_torch_source(spec_for(Case("all", ALL_OPS, "classification", None)))
    for primitive in P.PRIMITIVES.values():  # the row's text around its children, e.g. "torch.add(" and ")"
        pieces = [piece for piece in re.split(r"\{\d\}", primitive.torch) if piece.strip(" ,")]
        assert pieces and all(piece in source for piece in pieces), primitive.name
    ops = {n.op for c in CASES for _, n in c.tree.walk()}
    assert {"div", "log", "sqrt", "min", "max", "sign"} <= ops


def test_torchscript_export_does_not_warn():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = to_torchscript(spec_for(CASES[0]))
    assert data[:2] == b"PK"  # a zip archive
    assert [str(w.message) for w in caught] == []


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


