"""The pages load no numeric stack: the dashboard of a finished search (its loss shape and Pareto front), the
leaderboard and the downloads of its learned loss render in a web process that never imports torch.

The test process plays the worker: it stores the search's rows (computing each learned loss's shape, as a
worker does when it keeps a loss). A fresh Django process on the same database plays the web server: it
renders the pages through the test client and reports the modules it ended up with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lfl_web.experiments.models import Candidate, LearnedLoss, Status

from ..databases import shared_database_url

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]
CE = "mul(-1, mul(y, log(f)))"

# Renders every page of one learned loss; after each step, which of torch and sympy are loaded.
CHILD = """
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
experiment, loss = json.loads(sys.argv[1])
client = Client()
client.force_login(get_user_model().objects.get(username="ada"))
heavy = lambda: [m for m in ("torch", "sympy") if m in sys.modules]
report = {"imported": heavy()}
pages = {"dashboard": f"/experiments/{experiment}/", "results": f"/experiments/{experiment}/results/",
         "leaderboard": "/leaderboard/", "json": f"/losses/{loss}/download/json/",
         "torch": f"/losses/{loss}/download/torch/"}
for name, url in pages.items():
    response = client.get(url)
    report[name] = {"status": response.status_code, "loaded": heavy(),
                    "body": response.content.decode()[:200000] if name != "results" else ""}
print(json.dumps(report))
"""


def render_in_a_fresh_process(tmp_path: Path, experiment_id: int, loss_id: int) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "LFL_TEST_DATABASE_URL")}
    env.update(DJANGO_SETTINGS_MODULE="lfl_web.settings", DATABASE_URL=shared_database_url(),
               LFL_VAR_DIR=str(tmp_path / "var"), LFL_SECRET_KEY="torch-free-pages",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps([experiment_id, loss_id])], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dashboard_leaderboard_and_downloads_render_without_torch(tmp_path, make_experiment):
    experiment = make_experiment(baseline_loss="cross_entropy", baseline_fitness=0.2, status=Status.SUCCEEDED)
    for index, (expression, fitness) in enumerate([(CE, 0.1), ("mul(y, f)", 0.3), ("sub(f, y)", 0.4)]):
        Candidate.objects.create(experiment=experiment, generation=0, index=index, expression=expression,
                                 canonical_key=expression, latex="", fitness=fitness)
    LearnedLoss.objects.replace_for(experiment, [
        {"expression": CE, "canonical_key": CE, "latex": r"-y \log f", "fitness": 0.1, "size": 6,
         "weights": [1.0, 0.5, 1.0, 1.0, 2.0]},
    ])
    loss = LearnedLoss.objects.get(experiment=experiment)
    assert loss.loss_shape["kind"] == "classification"  # the worker's part: the shape is kept on the row

    report = render_in_a_fresh_process(tmp_path, experiment.pk, loss.pk)

    assert report["imported"] == []  # importing the views (django.setup, the URLconf) loads neither
    dashboard = report["dashboard"]
    assert dashboard["status"] == 200 and 'id="loss-shape-data"' in dashboard["body"]
    assert "3 distinct losses with a fitness" in dashboard["body"]  # the Pareto panel, sized by the engine
    assert "on the front · size 6 · error rate 0.1000" in dashboard["body"]
    assert report["leaderboard"]["status"] == 200 and CE in report["leaderboard"]["body"]
    assert report["results"]["status"] == 200
    assert report["json"]["status"] == 200 and json.loads(report["json"]["body"])["expression"] == CE
    # the pages, and a JSON download, need neither torch nor SymPy
    assert all(report[page]["loaded"] == [] for page in ("dashboard", "results", "leaderboard", "json")), report
    # the torch module's text is generated without torch (its docstring's simplified form is SymPy's)
    torch_download = report["torch"]
    assert torch_download["status"] == 200 and "class LearnedLoss(torch.nn.Module)" in torch_download["body"]
    assert torch_download["loaded"] == ["sympy"]


# The new-experiment form and the leaderboard, with the example plugin's choices, and the modules loaded.
FORM_CHILD = """
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client()
client.force_login(get_user_model().objects.get(username="ada"))
pages = {name: client.get(url) for name, url in (("form", "/experiments/new/"), ("leaderboard", "/leaderboard/"))}
print(json.dumps({"pages": {name: [r.status_code, r.content.decode()] for name, r in pages.items()},
                  "loaded": [m for m in ("torch", "sympy", "sklearn", "lfl_example_plugin.facts",
                                         "lfl_example_plugin.model", "lfl_example_plugin.data") if m in sys.modules]}))
"""


def test_the_form_and_the_leaderboard_offer_a_plugins_choices_without_torch(tmp_path, user):
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "LFL_TEST_DATABASE_URL")}
    env.update(DJANGO_SETTINGS_MODULE="lfl_web.settings", DATABASE_URL=shared_database_url(),
               LFL_VAR_DIR=str(tmp_path / "var"), LFL_SECRET_KEY="torch-free-pages",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", FORM_CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    (form_status, form), (board_status, board) = report["pages"]["form"], report["pages"]["leaderboard"]
    assert form_status == 200 and '<option value="breast_cancer">breast_cancer (3×10 grid, plugin)</option>' in form
    assert '<option value="grid_cnn">grid_cnn (small CNN, plugin)</option>' in form
    assert board_status == 200 and '<option value="grid_cnn">grid_cnn</option>' in board
    assert report["loaded"] == ["lfl_example_plugin.facts"]
