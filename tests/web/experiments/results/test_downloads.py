"""Downloads of a learned loss in the engine's four export formats, and who may have them."""

import ast
import io
import json

import pytest
import torch
from django.urls import reverse

from lfl_web.experiments.models import LearnedLoss, Status
from lfl_web.experiments.results.downloads import spec_for
from search_engine.export.json_export import from_json_export

from ...conftest import tiny_config

pytestmark = pytest.mark.django_db

CE = "mul(-1, mul(y, log(f)))"
WEIGHTS = [1.0, 0.5, 1.0, 1.0, 2.0]
META_TEST = {"metric": "error rate", "seeds": [0, 1], "learned": [0.1, 0.12], "baseline": [0.2, 0.2],
             "learned_mean": 0.11, "learned_std": 0.01, "baseline_mean": 0.2, "baseline_std": 0.0, "wins": 2,
             "t_statistic": -9.0, "p_value": 0.07}


@pytest.fixture
def learned(make_experiment):
    """A finished classification experiment whose best learned loss has weights and a meta-test."""

    def make(owner=None, private=False, baseline_loss="cross_entropy", config=None):
        experiment = make_experiment(owner=owner, private=private, config=config or tiny_config(),
                                     baseline_loss=baseline_loss, baseline_fitness=0.2, status=Status.SUCCEEDED)
        LearnedLoss.objects.replace_for(experiment, [{
            "expression": CE, "canonical_key": CE, "latex": r"-y \log f", "fitness": 0.1, "size": 6,
            "weights": WEIGHTS,
        }])
        LearnedLoss.objects.filter(experiment=experiment).update(meta_test=META_TEST)
        return LearnedLoss.objects.select_related("experiment").get(experiment=experiment)

    return make


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def download(client, loss, fmt):
    return client.get(reverse("download_loss", args=[loss.pk, fmt]))


def test_the_spec_carries_what_the_row_knows(learned):
    spec = spec_for(learned())
    assert (spec.expression, spec.weights, spec.kind) == (CE, tuple(WEIGHTS), "classification")
    assert (spec.dataset, spec.model, spec.metric) == ("digits", "logistic", "error rate")
    assert (spec.fitness, spec.baseline_loss, spec.baseline_fitness) == (0.1, "cross_entropy", 0.2)
    assert "learned better on 2/2" in spec.meta_test


def test_the_downloaded_module_leads_with_the_verdict_at_each_losss_best_learning_rate(signed_in, learned):
    loss = learned()
    tuned = {**META_TEST, "learned_mean": 0.19, "p_value": 0.5, "learned_lr": 0.0316, "baseline_lr": 0.316}
    LearnedLoss.objects.filter(pk=loss.pk).update(meta_test={**META_TEST, "tuned_lr": tuned})
    doc = " ".join(ast.get_docstring(ast.parse(download(signed_in, loss, "torch").content.decode())).split())
    said = doc.index("Meta-test: The learned loss is no better than cross-entropy at its best learning rate (p = 0.5).")
    at_tuned = doc.index("At each loss's own best learning rate (learned 0.0316, baseline 0.316): test error rate: "
                         "learned 0.1900")
    assert said < at_tuned < doc.index("At the search's learning rate (the paper's protocol): test error rate: "
                                       "learned 0.1100")


def test_a_regression_loss_without_a_recorded_baseline_takes_its_kind_from_the_dataset(learned):
    loss = learned(baseline_loss="", config=tiny_config(task={"dataset": "diabetes", "model": "mlp"}))
    spec = spec_for(loss)
    assert (spec.kind, spec.baseline_loss) == ("regression", "squared_error")


def test_torch_source_compiles_and_defines_the_module(signed_in, learned):
    loss = learned()
    response = download(signed_in, loss, "torch")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/x-python")
    assert response["Content-Disposition"] == f'attachment; filename="lfl_experiment{loss.experiment_id}_learned_loss_rank1.py"'
    source = response.content.decode()
    compile(source, "learned_loss.py", "exec")
    assert "class LearnedLoss" in source


def test_the_torch_source_names_the_method_that_learned_the_loss(signed_in, learned):
    loss = learned(config=tiny_config(method="taylorglo"))
    assert loss.method == "taylorglo" and spec_for(loss).method == "taylorglo"
    source = download(signed_in, loss, "torch").content.decode()
    assert source.startswith('r"""Learned loss function, exported by lfl: learned by TaylorGLO.') and "EvoMAL" not in source


def test_json_round_trips_through_the_engine(signed_in, learned):
    loss = learned()
    response = download(signed_in, loss, "json")
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].endswith('learned_loss_rank1.json"')
    spec = from_json_export(json.loads(response.content))
    assert spec == spec_for(loss)


def test_torchscript_loads_and_computes_a_loss(signed_in, learned):
    response = download(signed_in, learned(), "torchscript")
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].endswith('learned_loss_rank1.pt"')
    module = torch.jit.load(io.BytesIO(response.content))
    logits = torch.randn(4, 10)
    targets = torch.tensor([0, 1, 2, 3])
    value = module(logits, targets)
    assert value.shape == () and torch.isfinite(value)


def test_latex_is_a_document_with_the_formula(signed_in, learned):
    response = download(signed_in, learned(), "latex")
    assert response["Content-Type"].startswith("application/x-tex")
    text = response.content.decode()
    assert "\\begin{document}" in text and "\\log" in text


def test_an_unknown_format_is_not_found(signed_in, learned):
    loss = learned()
    assert download(signed_in, loss, "onnx").status_code == 404
    assert signed_in.get(f"/losses/{loss.pk}/download/").status_code == 404


def test_a_loss_of_someone_elses_private_experiment_is_not_found(signed_in, learned, other_user):
    secret = learned(owner=other_user, private=True)
    shared = learned(owner=other_user)
    assert download(signed_in, secret, "json").status_code == 404
    assert download(signed_in, shared, "json").status_code == 200
    assert signed_in.get(reverse("download_loss", args=[secret.pk + 100, "json"])).status_code == 404


def test_a_row_the_engine_cannot_read_gets_a_message_not_an_error(signed_in, learned):
    loss = learned()
    LearnedLoss.objects.filter(pk=loss.pk).update(weights=[1.0, 2.0])  # wrong number of edge weights
    response = download(signed_in, loss, "json")
    assert response.status_code == 302 and response["Location"] == loss.experiment.get_absolute_url()
    page = signed_in.get(response["Location"]).content.decode()
    assert "Could not export loss #1" in page and "edge weight" in page
