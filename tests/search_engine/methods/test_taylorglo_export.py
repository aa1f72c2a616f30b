"""The best TaylorGLO polynomial is an ordinary learned loss: every export format, and the torch file
imported in a fresh interpreter equals the in-memory loss (and the float64 reference polynomial)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from search_engine.export.formats import FORMATS, export, from_json_export
from search_engine.export.loss_shape import loss_shape
from search_engine.export.spec import LearnedLossSpec
from search_engine.expr.weighted import make_weighted_loss
from search_engine.methods.taylorglo_poly import POLYNOMIAL_EXPRESSION
from search_engine.study.driver import run_search

from .test_taylorglo_poly import reference_loss, reference_polynomial
from .test_taylorglo_run import taylorglo_config

# Runs in `python -I` in the export folder: sees neither the project nor PYTHONPATH.
CHILD = r"""
import importlib.util, json, sys
import torch

spec = importlib.util.spec_from_file_location("learned_loss", "learned_loss.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
scripted = torch.jit.load("learned_loss.pt")
inputs = torch.load("inputs.pt")
out = {}
for reduction in ("mean", "sum", "none"):
    out["eager/" + reduction] = module.LearnedLoss(reduction)(inputs["logits"], inputs["labels"])
    scripted.reduction = reduction
    out["script/" + reduction] = scripted(inputs["logits"], inputs["labels"])
torch.save(out, "outputs.pt")
json.dump({"project": sorted(m for m in sys.modules if m.split(".")[0] == "search_engine"),
           "weights": list(module.WEIGHTS), "expression": module.EXPRESSION}, open("info.json", "w"))
"""


@pytest.fixture(scope="module")
def result_dict(one_thread):
    result = run_search(taylorglo_config(taylorglo={"generations": 2}))
    return json.loads(json.dumps(result.to_dict()))  # exactly what result.json holds


@pytest.fixture(scope="module")
def spec(result_dict):
    return LearnedLossSpec.from_result(result_dict)


def theta_of(result_dict) -> tuple[float, ...]:
    """The best candidate's parameters, read back from its hall-of-fame key."""
    key = result_dict["hall_of_fame"][0]["canonical_key"]
    return tuple(float(v) for v in key.removeprefix("taylorglo(").removesuffix(")").split(","))


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return {"logits": torch.randn(20, 10, generator=g, dtype=torch.float64) * 3,
            "labels": torch.randint(0, 10, (20,), generator=g)}


def test_the_best_entry_is_a_weighted_learned_loss(result_dict, spec):
    best = result_dict["best"]
    assert spec.expression == POLYNOMIAL_EXPRESSION and spec.weights == tuple(best["weights"])
    assert spec.fitness == best["fitness"] and spec.kind == "classification" and spec.dataset == "digits"


def test_every_format_renders_and_json_reimports_exactly(spec):
    for name in FORMATS:
        assert export(spec, name), name
    assert from_json_export(json.loads(export(spec, "json"))) == spec
    assert r"\cdot" in export(spec, "latex").decode()


def test_the_torch_export_in_a_fresh_interpreter_equals_the_in_memory_loss(spec, result_dict, tmp_path):
    (tmp_path / "learned_loss.py").write_bytes(export(spec, "torch"))
    (tmp_path / "learned_loss.pt").write_bytes(export(spec, "torchscript"))
    data = inputs()
    torch.save(data, tmp_path / "inputs.pt")
    (tmp_path / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-I", "child.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["project"] == [] and tuple(info["weights"]) == spec.weights  # every bit of every weight
    assert info["expression"] == POLYNOMIAL_EXPRESSION
    outputs = torch.load(tmp_path / "outputs.pt")
    weights = torch.tensor(spec.weights, dtype=torch.float64)
    theta = theta_of(result_dict)
    for reduction in ("mean", "sum", "none"):
        in_memory = make_weighted_loss(spec.tree, "classification", reduction)(weights, data["logits"], data["labels"])
        want = reference_loss(theta, data["logits"], data["labels"], "classification", reduction)
        for how in ("eager", "script"):
            got = outputs[f"{how}/{reduction}"]
            torch.testing.assert_close(got, in_memory, rtol=1e-12, atol=1e-12)
            # the key rounds theta to 12 digits, so the reference agrees to about that
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-9)


def test_the_loss_shape_is_the_polynomial_summed_over_classes(spec, result_dict):
    shape = loss_shape(spec, grid=5)
    theta = theta_of(result_dict)
    for p, value in zip(shape["p"], shape["loss_true"]):
        f = np.array([p] + [(1 - p) / 9] * 9)
        y = np.eye(10)[0]
        assert value == pytest.approx(reference_polynomial(theta, y, f).sum(), rel=1e-9, abs=1e-9)
