"""ML3's configuration, its initial network and its meta-gradient (checked against finite differences)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from search_engine.config import ConfigError, load_config
from search_engine.expr.network import flat_size, network_widths
from search_engine.methods.ml3_runner import initial_weights, meta_loss, widths_of
from search_engine.methods.settings import ML3Settings
from search_engine.tasks.task import Task, load_task

pytestmark = pytest.mark.usefixtures("one_thread")


def errors_of(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_config(data, check_data=False)
    return caught.value.errors


# ------------------------------------------------------------------------------ configuration


def test_the_defaults_are_the_reference_runners():
    m = ML3Settings()
    assert (m.meta_steps, m.inner_steps, m.meta_lr, m.batch_size) == (250, 1, 1e-3, 128)
    assert network_widths(m.hidden_units, m.hidden_layers) == (2, 50, 50, 1)
    assert m.report_every == m.meta_steps // 10  # the reference scores the network every 10% of the steps


def test_bad_ml3_fields_are_named():
    errors = errors_of({"method": "ml3", "ml3": {"meta_steps": 0, "inner_steps": -1, "meta_lr": 0.0,
                                                 "hidden_units": 0, "hidden_layers": 0, "batch_size": 0,
                                                 "report_every": 0}})
    for name in ("meta_steps", "inner_steps", "hidden_units", "hidden_layers", "batch_size", "report_every"):
        assert errors[f"ml3.{name}"].startswith("must be at least 1"), name
    assert errors["ml3.meta_lr"] == "must be positive and at most 10, got 0.0"
    assert "ml3.hiden_units" in errors_of({"method": "ml3", "ml3": {"hiden_units": 8}})
    assert "did you mean 'hidden_units'" in errors_of({"ml3": {"hiden_units": 8}})["ml3.hiden_units"]
    assert errors_of({"method": "ml3", "ml3": {"meta_lr": "fast"}}) == {"ml3.meta_lr": "must be a number, got 'fast'"}


def test_the_ml3_section_is_checked_only_when_ml3_runs():
    assert load_config({"ml3": {"meta_steps": 0}}, check_data=False).ml3.meta_steps == 0
    assert "ml3.meta_steps" in errors_of({"method": "ml3", "ml3": {"meta_steps": 0}})


# ------------------------------------------------------------------------------ initial network


def test_initial_weights_are_kaiming_normal_and_seeded():
    widths = (2, 50, 50, 1)
    w = initial_weights(widths, seed=0)
    assert w.shape == (flat_size(widths),) == (2 * 50 + 50 * 50 + 50,)
    torch.testing.assert_close(w, initial_weights(widths, seed=0), rtol=0, atol=0)
    assert not torch.equal(w, initial_weights(widths, seed=1))
    hidden = w[100:2600]  # fan-in 50: std sqrt(2 / 50) = 0.2
    assert abs(float(hidden.std()) - 0.2) < 0.02 and abs(float(hidden.mean())) < 0.02
    assert abs(float(w[:100].std()) - 1.0) < 0.2  # fan-in 2: std 1


# ------------------------------------------------------------------------------ meta-gradient


@pytest.fixture(scope="module")
def digits64() -> Task:
    """digits + logistic regression on 200 samples, features in float64 (the model follows)."""
    task = load_task(load_config({"task": {"dataset": "digits", "model": "logistic", "max_train": 200},
                                  "device": "cpu"}))
    s = task.splits
    double = {name: getattr(s, name).double() for name in ("x_train", "x_val", "x_test")}
    return dataclasses.replace(task, splits=dataclasses.replace(s, **double))


def _config(**training):
    return load_config({"method": "ml3", "task": {"dataset": "digits", "model": "logistic", "max_train": 200},
                        "training": {"lr": 0.5, **training},
                        "ml3": {"hidden_units": 8, "inner_steps": 2, "batch_size": 32}, "seed": 5, "device": "cpu"},
                       check_data=False)


@pytest.mark.parametrize("training", [{}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}])
def test_the_meta_gradient_matches_finite_differences(digits64, training):
    config = _config(**training)
    weights = initial_weights(widths_of(config), config.seed).double()  # (P,)

    def objective(w: torch.Tensor) -> torch.Tensor:
        return meta_loss(digits64, w, config, step=3)

    w = weights.clone().requires_grad_(True)
    value = objective(w)
    assert value.dtype == torch.float64 and math.isfinite(float(value.detach()))
    (analytic,) = torch.autograd.grad(value, w)
    # One weight of each layer, and the weight the meta-loss depends on most.
    picks = [0, 1, 2 * 8 + 5, flat_size(widths_of(config)) - 1, int(analytic.abs().argmax())]
    eps = 1e-6
    for i in picks:
        step = torch.zeros_like(weights)
        step[i] = eps
        with torch.no_grad():
            numeric = (objective(weights + step) - objective(weights - step)) / (2 * eps)
        torch.testing.assert_close(analytic[i], numeric, rtol=1e-5, atol=1e-9, msg=f"weight {i}")
    assert float(analytic.abs().max()) > 1e-4  # the weights matter: the comparison means something


def test_the_meta_loss_is_deterministic_per_step(digits64):
    config = _config()
    w = initial_weights(widths_of(config), config.seed).double()
    with torch.no_grad():
        a = float(meta_loss(digits64, w, config, step=0))
        assert a == float(meta_loss(digits64, w, config, step=0))
        assert a != float(meta_loss(digits64, w, config, step=1))
