"""A network loss through every export: torch source and TorchScript run in a fresh interpreter that
sees only torch, JSON re-imports equal, LaTeX states the architecture, the loss shape and the meta-test."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest
import torch

from search_engine.config import load_config
from search_engine.export.formats import export, read_spec, to_latex_document, to_torch_source, write_export
from search_engine.export.json_export import from_json_export, to_json_export
from search_engine.export.loss_shape import loss_shape
from search_engine.export.spec import LearnedLossSpec
from search_engine.expr.losses import REDUCTIONS
from search_engine.expr.network import NetworkLoss, make_network_loss
from search_engine.scoring.metatest import evaluate_learned_loss, held_out_metric, meta_seeds
from search_engine.tasks.task import load_task

KINDS = ("classification", "regression")


def network(seed: int) -> NetworkLoss:
    g = torch.Generator().manual_seed(seed)
    widths = (2, 7, 5, 1)
    return NetworkLoss(layers=[(torch.randn(b, a, generator=g, dtype=torch.float64) / a ** 0.5).tolist()
                               for a, b in zip(widths[:-1], widths[1:])])


def spec_of(kind: str, **overrides) -> LearnedLossSpec:
    fields = dict(expression="ignored: a network loss is named by its network", weights=None, kind=kind,
                  dataset="digits", model="mlp", fitness=0.04,
                  baseline_loss="cross_entropy" if kind == "classification" else "squared_error",
                  baseline_fitness=0.05, metric="error rate" if kind == "classification" else "MSE",
                  network=network(1 if kind == "classification" else 2).to_dict())
    return LearnedLossSpec(**{**fields, **overrides})


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    return {"classification": (torch.randn(6, 4, generator=g, dtype=torch.float64) * 2,
                               torch.randint(0, 4, (6,), generator=g)),
            "regression": (torch.randn(6, 2, generator=g, dtype=torch.float64),
                           torch.randn(6, 2, generator=g, dtype=torch.float64)),
            "x": x, "labels": (x @ torch.randn(5, 3, generator=g, dtype=torch.float64)).argmax(dim=-1),
            "y": x @ torch.randn(5, generator=g, dtype=torch.float64)}


# Runs in `python -I` with cwd = the export folder: sees neither the project nor PYTHONPATH.
CHILD = r"""
import importlib.util, json, sys
import torch

try:  # the exported files must work where lfl is not installed
    import search_engine  # noqa: F401
    project_visible = True
except ImportError:
    project_visible = False
inputs = torch.load("inputs.pt")
out, info = {}, {"project_visible": project_visible}


def fit(criterion, kind, steps=20):
    # A few SGD steps of a seeded linear model on the criterion; the loss value after each.
    torch.manual_seed(0)
    width = 3 if kind == "classification" else 1
    layer = torch.nn.Linear(5, width).double()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.05)
    goal = inputs["labels"] if kind == "classification" else inputs["y"]
    trace = []
    for _ in range(steps):
        optimizer.zero_grad()
        predicted = layer(inputs["x"])
        value = criterion(predicted if width > 1 else predicted[:, 0], goal)
        value.backward()
        optimizer.step()
        trace.append(float(value))
    return trace


for kind in ("classification", "regression"):
    found = importlib.util.spec_from_file_location(kind, kind + ".py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    scripted = torch.jit.load(kind + ".pt")
    a, b = inputs[kind]
    for reduction in ("mean", "sum", "none"):
        out[kind + "/" + reduction + "/eager"] = module.LearnedLoss(reduction)(a, b)
        scripted.reduction = reduction
        out[kind + "/" + reduction + "/script"] = scripted(a, b)
    scripted.reduction = "mean"
    info[kind] = {"WIDTHS": module.WIDTHS, "LAYERS": module.LAYERS, "KIND": module.KIND,
                  "train_eager": fit(module.LearnedLoss(), kind), "train_script": fit(scripted, kind)}
torch.save(out, "outputs.pt")
json.dump(info, open("info.json", "w"))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Both kinds exported (.py and .pt) and run in ONE fresh isolated interpreter."""
    folder = tmp_path_factory.mktemp("network_export")
    sources = {}
    for kind in KINDS:
        sources[kind] = to_torch_source(spec_of(kind))
        (folder / f"{kind}.py").write_text(sources[kind], encoding="utf-8")
        (folder / f"{kind}.pt").write_bytes(export(spec_of(kind), "torchscript"))
    data = inputs()
    torch.save(data, folder / "inputs.pt")
    (folder / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-I", "child.py"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"outputs": torch.load(folder / "outputs.pt"), "info": json.loads((folder / "info.json").read_text()),
            "inputs": data, "sources": sources}


def test_the_module_imports_only_torch_and_the_child_cannot_see_the_project(exported):
    assert exported["info"]["project_visible"] is False
    for source in exported["sources"].values():
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
        assert imported == {"torch"}


@pytest.mark.parametrize("kind", KINDS)
def test_the_module_and_torchscript_equal_the_in_memory_loss(exported, kind):
    outputs, (a, b) = exported["outputs"], exported["inputs"][kind]
    for reduction in REDUCTIONS:
        want = make_network_loss(spec_of(kind).network, kind, reduction)(a, b)
        for how in ("eager", "script"):
            got = outputs[f"{kind}/{reduction}/{how}"]
            assert got.dtype == torch.float64 and got.shape == want.shape
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_the_weights_are_embedded_at_full_precision_and_train_a_model(exported, kind):
    info, net = exported["info"][kind], spec_of(kind).network
    assert info["WIDTHS"] == [2, 7, 5, 1] and info["KIND"] == kind
    assert NetworkLoss(layers=info["LAYERS"]) == net
    for how in ("train_eager", "train_script"):
        losses = info[how]
        assert all(v == v and abs(v) < 1e6 for v in losses) and losses[-1] < losses[0], how
    assert info["train_eager"] == pytest.approx(info["train_script"], rel=1e-12)


def test_the_docstring_states_the_architecture_task_and_fitness():
    spec = spec_of("classification", meta_test="test error rate: learned 0.1 vs baseline 0.2")
    doc = ast.get_docstring(ast.parse(to_torch_source(spec)))
    for piece in ("Architecture: 2-7-5-1", "relu between them", "softplus on the output", "54 weights",
                  spec.network.latex(), spec.network.fingerprint, "validation error rate: 0.0400",
                  "Meta-test: test error rate", "criterion = LearnedLoss()"):
        assert piece in doc, piece


def test_json_re_imports_equal_and_refuses_a_tree_beside_a_network():
    for kind in KINDS:
        spec = spec_of(kind)
        data = json.loads(export(spec, "json"))
        assert data["tree"] is None and data["weights"] is None and data["network"]["format"] == "lfl-network-loss"
        assert from_json_export(data) == spec
    data = to_json_export(spec_of("classification"))
    with pytest.raises(ValueError, match="network loss has no 'tree'"):
        from_json_export({**data, "tree": {"op": "f"}})
    with pytest.raises(ValueError, match=r"network: layers\[0\]\[0\]\[1\] must be finite"):
        from_json_export({**data, "network": {**data["network"], "layers": [[[1.0, float("inf")]]]}})


def test_latex_states_the_architecture():
    net = spec_of("regression").network
    text = to_latex_document(spec_of("regression"))
    for piece in (r"\begin{document}", r"\end{document}", r"\usepackage{amssymb}", "2--7--5--1", net.latex(),
                  "3 bias-free linear layers", "relu between them", "softplus on the output", "54 learned weights",
                  "the prediction of output", f"% expression: {net.expression}"):
        assert piece in text, piece


def test_the_spec_names_a_network_by_its_network_and_refuses_mixed_forms():
    spec = spec_of("classification")
    assert spec.expression == spec.network.expression and spec.weights is None
    with pytest.raises(ValueError, match="no expression tree"):
        _ = spec.tree
    with pytest.raises(ValueError, match="weights must be null for a network loss"):
        spec_of("classification", weights=[1.0])
    with pytest.raises(ValueError, match="network: not a network loss"):
        spec_of("classification", network={"format": "x"})


def test_the_loss_shape_is_the_network_along_the_slices():
    for kind in KINDS:
        shape = loss_shape(spec_of(kind), grid=5, n_classes=4)
        assert all(v is not None and v > 0 for k in ("loss_true", "loss_wrong", "loss") for v in shape.get(k, []))
    shape = loss_shape(spec_of("regression"), grid=3, residual_range=1.0)  # residuals -1, 0, 1 at target 0
    per_sample = make_network_loss(spec_of("regression").network, "regression", "none")
    want = per_sample(torch.tensor([[-1.0], [0.0], [1.0]], dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64))
    assert shape["loss"] == pytest.approx(want.tolist(), rel=1e-12)
    with pytest.raises(ValueError, match="no edge weights"):
        loss_shape(spec_of("regression"), weights=[1.0])


def ml3_result(entry_network: dict) -> dict:
    net = NetworkLoss.from_dict(entry_network)
    entry = {"expression": net.expression, "canonical_key": net.expression, "latex": net.latex(), "fitness": 0.03,
             "size": net.n_weights, "generation": 2, "weights": None, "network": entry_network}
    return {"format": "lfl-search-result", "version": 1, "config": {"task": {"dataset": "digits", "model": "mlp"}},
            "status": "completed", "best": entry, "hall_of_fame": [entry], "history": [],
            "baseline_loss": "cross_entropy", "baseline_fitness": 0.05}


def test_a_result_with_a_network_exports_from_the_command_line_path(tmp_path):
    result = ml3_result(network(1).to_dict())
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result))
    spec = read_spec(path)
    assert spec.network == network(1) and spec.fitness == 0.03 and spec.kind == "classification"
    for fmt in ("torch", "torchscript", "latex", "json"):
        assert write_export(path, 1, fmt, tmp_path).stat().st_size > 0
    assert from_json_export(json.loads((tmp_path / "learned_loss_rank1.json").read_text())) == spec


def test_the_meta_test_trains_with_the_network(one_thread):
    config = load_config({"task": {"dataset": "digits", "model": "logistic", "max_train": 200},
                          "training": {"lr": 0.05}, "meta_test": {"steps": 15, "seeds": 2}, "device": "cpu"})
    task = load_task(config)
    net = NetworkLoss.from_flat([0.1 * ((i * 7) % 11 - 5) for i in range(2 * 4 + 4 * 4 + 4)], (2, 4, 4, 1))
    record = evaluate_learned_loss(task, config, net.expression, None, "cross_entropy", network=net.to_dict())
    assert record["expression"] == net.expression and "symbolic" not in record and len(record["learned"]) == 2
    seed = meta_seeds(config, 2)[0]
    assert record["learned"][0] == held_out_metric(task, make_network_loss(net, task.kind), config, seed, 15)
    with pytest.raises(ValueError, match="no edge weights"):
        evaluate_learned_loss(task, config, net.expression, [1.0], "cross_entropy", network=net.to_dict())
