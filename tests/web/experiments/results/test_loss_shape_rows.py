"""A learned loss keeps its loss shape on its row: computed when the worker stores it (and, for losses
stored before, by a data migration), the same data the engine draws from the loss's spec."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from lfl_web.experiments.models import LearnedLoss, Status
from lfl_web.experiments.results.downloads import spec_for
from search_engine.export.loss_shape import loss_shape

from ...conftest import tiny_config

CE = "mul(-1, mul(y, log(f)))"
SE = "square(sub(y, f))"
BEFORE = [("experiments", "0010_stored_searches_keep_the_fixed_protocol")]
AFTER = [("experiments", "0011_learned_loss_shape")]


def engine_shape(loss: LearnedLoss, n_classes: int) -> dict:
    """What the dashboard drew before shapes were stored: the engine's shape of the loss's spec."""
    return loss_shape(spec_for(loss), n_classes=n_classes, grid=41)


@pytest.mark.django_db
def test_storing_the_learned_losses_keeps_each_ones_shape(make_experiment):
    experiment = make_experiment(baseline_loss="cross_entropy", baseline_fitness=0.2, status=Status.SUCCEEDED)
    LearnedLoss.objects.replace_for(experiment, [
        {"expression": CE, "fitness": 0.1, "size": 6, "weights": [1.0, 0.5, 1.0, 1.0, 2.0]},
        {"expression": SE, "fitness": 0.2, "size": 4},
        {"expression": "long(f, y)", "fitness": 0.3},  # not an expression: no shape, and no error
    ])
    best, second, unreadable = experiment.learned_losses.order_by("rank")
    assert best.loss_shape == engine_shape(best, 10) and best.loss_shape["n_classes"] == 10  # digits: 10 classes
    assert second.loss_shape == engine_shape(second, 10)
    assert unreadable.loss_shape is None


@pytest.mark.django_db
def test_a_regression_loss_gets_the_residual_slice(make_experiment):
    experiment = make_experiment(config=tiny_config(task={"dataset": "diabetes", "model": "mlp"}),
                                 baseline_loss="squared_error", baseline_fitness=0.5, status=Status.SUCCEEDED)
    LearnedLoss.objects.replace_for(experiment, [{"expression": SE, "fitness": 0.4, "size": 4}])
    loss = experiment.learned_losses.get()
    assert loss.loss_shape["kind"] == "regression" and loss.loss_shape == engine_shape(loss, 10)
    assert loss.loss_shape["loss"][0] == pytest.approx(9.0)  # a residual of -3, squared


@pytest.mark.django_db(transaction=True)
def test_losses_stored_before_get_their_shape_from_the_migration(back_to_latest):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    owner = old.get_model("auth", "User").objects.create(username="before")
    Experiment, OldLoss = old.get_model("experiments", "Experiment"), old.get_model("experiments", "LearnedLoss")
    fields = {"owner": owner, "config": tiny_config(), "status": Status.SUCCEEDED, "baseline_loss": "cross_entropy"}
    experiment = Experiment.objects.create(name="old", n_classes=4, **fields)
    rows = {"plain": OldLoss.objects.create(experiment=experiment, rank=1, expression=CE, validation_fitness=0.1,
                                            dataset="digits", model="logistic", metric="error rate"),
            "broken": OldLoss.objects.create(experiment=experiment, rank=2, expression=CE, weights=[1.0],
                                             validation_fitness=0.2, dataset="digits", model="logistic",
                                             metric="error rate")}

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    plain = LearnedLoss.objects.select_related("experiment").get(pk=rows["plain"].pk)
    assert plain.loss_shape == engine_shape(plain, 4) and plain.loss_shape["n_classes"] == 4  # the counted classes
    assert LearnedLoss.objects.get(pk=rows["broken"].pk).loss_shape is None  # one weight for five edges
