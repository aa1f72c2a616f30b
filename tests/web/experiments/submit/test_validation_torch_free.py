"""Validating a configuration in the web process loads no numeric stack (torch, torchvision, sympy).

Each check runs `validated_config` in a fresh Django process, the way the first form or API submit
of a freshly started server does; the modules that process ends up with are what a submit costs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.search_engine.tasks.test_vision import _fake_image_set, _write_mnist

ROOT = Path(__file__).resolve().parents[4]

#: torch, torchvision and sympy take seconds to import; sklearn (0.7 s) is needed only when the size
#: checks leave a split's verdict open, which none of these configurations does.
HEAVY = ("torch", "torchvision", "sympy", "sklearn")

# Each configuration's stored task, or its errors by field; then the heavy modules the process loaded.
CHILD = """
import json, sys
import django
django.setup()
from django.core.exceptions import ValidationError
from lfl_web.experiments.submit.validation import errors_by_field, validated_config
results = []
for config in json.loads(sys.argv[1]):
    try:
        results.append({"task": validated_config(config)["task"]})
    except ValidationError as exc:
        results.append({"errors": errors_by_field(exc)})
print(json.dumps({"results": results, "loaded": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}))
"""


def validate_in_a_fresh_process(tmp_path: Path, configs: list[dict], watched: tuple[str, ...] = HEAVY) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "LFL_TEST_DATABASE_URL")}
    env.update(DJANGO_SETTINGS_MODULE="lfl_web.settings", LFL_DATA_DIRS=str(tmp_path),
               LFL_VAR_DIR=str(tmp_path / "var"), LFL_SECRET_KEY="torch-free-test",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(configs), json.dumps(watched)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_digits_csv_npz_and_mnist_configurations_validate_without_the_numeric_stack(tmp_path):
    csv_file = tmp_path / "points.csv"
    csv_file.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{'xyz'[i % 3]}\n" for i in range(60)))
    npz_file = tmp_path / "points.npz"
    np.savez(npz_file, x=np.random.default_rng(0).normal(size=(50, 2, 3, 3)), y=np.arange(50) % 4)
    _write_mnist(tmp_path / "vision", "MNIST", *_fake_image_set((1, 28, 28), range(10)))  # real idx files
    configs = [
        {},
        {"task": {"dataset": "csv", "model": "mlp", "data_file": str(csv_file), "kind": "classification"}},
        {"task": {"dataset": "npz", "model": "mlp", "data_file": str(npz_file), "kind": "classification"}},
        {"task": {"dataset": "mnist", "model": "lenet5", "data_root": str(tmp_path / "vision")}},
    ]
    result = validate_in_a_fresh_process(tmp_path, configs)
    assert all("task" in r for r in result["results"]), result["results"]
    assert [r["task"]["dataset"] for r in result["results"]] == ["digits", "csv", "npz", "mnist"]
    assert result["loaded"] == []


def test_refusals_need_no_numeric_stack_either(tmp_path):
    """A configuration refused for its data is refused in the same light process (the worker's messages
    themselves are compared with the torch-free ones in tests/search_engine/test_describe.py)."""
    (tmp_path / "one.csv").write_text("a,b,label\n1,2,yes\n")
    configs = [
        {"task": {"dataset": "csv", "model": "mlp", "data_file": str(tmp_path / "one.csv"), "kind": "classification"}},
        {"task": {"model": "lenet5"}},
        {"task": {"dataset": "mnist", "model": "lenet5", "data_root": str(tmp_path / "absent")}},
    ]
    result = validate_in_a_fresh_process(tmp_path, configs)
    first, second, third = (r["errors"] for r in result["results"])
    assert list(first) == ["task.data_file"] and "has 1 sample(s)" in first["task.data_file"]
    assert second == {"task.model": "lenet5 needs image input of at least 12x12 with shape (C, H, W); "
                                    "dataset 'digits' gives (1, 8, 8)"}
    assert third == {"task.data_root": f"data root for 'mnist' not found: {tmp_path / 'absent'}"}
    assert result["loaded"] == []


def test_a_plugins_data_set_and_model_validate_from_its_facts_alone(tmp_path):
    """The example plugin (installed by requirements-dev.txt): its torch-free facts module is read, its
    loader (scikit-learn) and builder (torch) are not imported; the verdicts are the worker's."""
    plugin_modules = ("lfl_example_plugin.facts", "lfl_example_plugin.data", "lfl_example_plugin.model")
    configs = [
        {"task": {"dataset": "breast_cancer", "model": "grid_cnn"}},
        {"task": {"dataset": "breast_cancer", "model": "lenet5"}},
        {"task": {"dataset": "diabetes", "model": "grid_cnn"}},
    ]
    result = validate_in_a_fresh_process(tmp_path, configs, HEAVY + plugin_modules)
    accepted, too_small, flat = result["results"]
    assert accepted["task"]["dataset"] == "breast_cancer" and accepted["task"]["model"] == "grid_cnn"
    assert too_small["errors"] == {"task.model": "lenet5 needs image input of at least 12x12 with shape (C, H, W); "
                                                 "dataset 'breast_cancer' gives (1, 3, 10)"}
    assert flat["errors"] == {"task.model": "grid_cnn needs image input of at least 2x2 with shape (C, H, W); "
                                            "dataset 'diabetes' gives (10,)"}
    assert result["loaded"] == ["lfl_example_plugin.facts"]
