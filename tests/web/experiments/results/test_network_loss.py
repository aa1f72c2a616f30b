"""A network loss (ML3) in the web app: recorded from the engine's events, shown by its architecture,
plotted, and downloaded in all four formats through the view."""

import importlib.util
import io
import json

import pytest
import torch
from django.urls import reverse

from lfl_web.experiments.live.recording import record_event
from lfl_web.experiments.models import Experiment, LearnedLoss, Status
from lfl_web.experiments.results.dashboard import render_panels
from lfl_web.experiments.results.downloads import spec_for
from lfl_web.experiments.results.loss_shapes import shape_data
from search_engine.config import load_config
from search_engine.export.json_export import from_json_export
from search_engine.expr.network import NetworkLoss, make_network_loss
from search_engine.study.driver import run_search

from ...conftest import tiny_config

pytestmark = pytest.mark.django_db

ML3 = {"meta_steps": 4, "report_every": 2, "hidden_units": 8, "batch_size": 32, "meta_lr": 0.01}


@pytest.fixture(scope="module")
def ml3_events():
    """The events of one tiny ML3 run (recorded per test into that test's experiment)."""
    torch.set_num_threads(1)
    events = []
    result = run_search(load_config(tiny_config(method="ml3", ml3=ML3)), events.append)
    assert result.status == "completed"
    return events


@pytest.fixture
def recorded(make_experiment, ml3_events):
    """A finished ML3 experiment whose events went through the worker's recorder."""
    experiment = make_experiment(config=load_config(tiny_config(method="ml3", ml3=ML3)).to_dict(),
                                 status=Status.RUNNING)
    for event in ml3_events:
        record_event(experiment.pk, event)
    return Experiment.objects.get(pk=experiment.pk)


@pytest.fixture
def owner_client(client, recorded):
    """The test client, signed in as the experiment's owner."""
    client.force_login(recorded.owner)
    return client


def fetch(client, loss: LearnedLoss, fmt: str):
    return client.get(reverse("download_loss", args=[loss.pk, fmt]))


def test_the_recorder_stores_the_network_as_a_learned_loss(recorded, ml3_events):
    assert recorded.status == Status.SUCCEEDED and recorded.generations.count() == 2
    loss = recorded.learned_losses.get()
    net = NetworkLoss.from_dict(loss.network)
    assert (loss.method, loss.expression, loss.latex) == ("ml3", net.expression, net.latex())
    assert loss.complexity == net.n_weights == 2 * 8 + 8 * 8 + 8 and loss.weights is None
    assert loss.validation_fitness == ml3_events[-1].best.fitness


def test_the_panels_show_the_architecture_and_the_shape_of_the_network(recorded):
    panels = render_panels(recorded, ("hall-of-fame-panel", "best-panel", "loss-shape-panel"))
    loss = recorded.learned_losses.get()
    assert "network loss 2-8-8-1" in panels["hall-of-fame-panel"] and r"\operatorname{softplus}" in panels["hall-of-fame-panel"]
    # Size and weights are both the network's 88 weights (it has no edge weights).
    assert panels["hall-of-fame-panel"].count('<td class="num">88</td>') == 2
    assert "network loss 2-8-8-1" in panels["best-panel"]
    shape = loss.loss_shape  # computed by the recorder when it stored the loss
    assert shape["kind"] == "classification" and all(v is not None for v in shape["loss_true"])
    assert "loss-shape-data" in panels["loss-shape-panel"]


def test_the_row_downloads_in_all_four_formats(recorded, owner_client, tmp_path):
    loss = recorded.learned_losses.get()
    net = NetworkLoss.from_dict(loss.network)
    logits, labels = torch.randn(5, 10, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 3, 9, 1, 1])
    want = make_network_loss(net, "classification")(logits, labels)

    source = fetch(owner_client, loss, "torch")
    assert source.status_code == 200 and source["Content-Disposition"].endswith('learned_loss_rank1.py"')
    path = tmp_path / "learned_loss.py"
    path.write_bytes(source.content)
    module_spec = importlib.util.spec_from_file_location("learned_loss", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    torch.testing.assert_close(module.LearnedLoss()(logits, labels), want, rtol=0, atol=0)

    scripted = torch.jit.load(io.BytesIO(fetch(owner_client, loss, "torchscript").content))
    torch.testing.assert_close(scripted(logits, labels), want, rtol=0, atol=0)

    exported = json.loads(fetch(owner_client, loss, "json").content)
    assert from_json_export(exported) == spec_for(loss) and exported["network"] == loss.network

    latex = fetch(owner_client, loss, "latex").content.decode()
    assert r"\begin{document}" in latex and "2--8--8--1" in latex and "88 learned weights" in latex


def test_a_damaged_network_row_gets_a_message_not_an_error(recorded, owner_client):
    loss = recorded.learned_losses.get()
    LearnedLoss.objects.filter(pk=loss.pk).update(network={**loss.network, "layers": [[[1.0, 2.0, 3.0]]]})
    response = fetch(owner_client, loss, "torch")
    assert response.status_code == 302 and response["Location"] == recorded.get_absolute_url()
    page = owner_client.get(response["Location"]).content.decode()
    assert "Could not export loss #1" in page and "network: layers[0] has rows of 3 inputs" in page
    damaged = LearnedLoss.objects.get(pk=loss.pk)
    assert shape_data(expression=damaged.expression, weights=None, network=damaged.network, kind="classification",
                      n_classes=10) is None


def test_recording_the_events_twice_keeps_one_network(recorded, ml3_events):
    for event in ml3_events:
        record_event(recorded.pk, event)
    assert recorded.learned_losses.count() == 1 and recorded.generations.count() == 2
