import math

import torch

from search_engine.config import TrainingConfig
from search_engine.expr.losses import make_loss
from search_engine.expr.tree import CROSS_ENTROPY, SQUARED_ERROR, parse
from search_engine.scoring.rejection import NO_PREDICTION, NON_FINITE
from search_engine.scoring.sequential import TRAINING_DIVERGED, SequentialEvaluator
from search_engine.tasks.task import load_task
from search_engine.tasks.training import batch_indices, train

from ..conftest import tiny_config


def evaluator(**overrides):
    config = tiny_config(**overrides)
    return SequentialEvaluator(load_task(config), config)


def test_batches_are_epochs_of_permutations():
    idx = batch_indices(10, 4, 5, torch.Generator().manual_seed(0), "cpu")
    assert idx.shape == (5, 4)
    flat = idx.flatten().tolist()
    assert sorted(flat[:10]) == list(range(10))  # the first epoch visits every sample once
    assert batch_indices(3, 8, 2, torch.Generator().manual_seed(0), "cpu").shape == (2, 3)


def test_fitness_is_deterministic_and_cross_entropy_learns():
    ev = evaluator()
    a, b = ev.fitness(CROSS_ENTROPY), ev.fitness(CROSS_ENTROPY)
    assert a == b
    assert a.ok and a.fitness < 0.5  # 10 classes: chance is 0.9


def test_rejection_reasons():
    ev = evaluator()
    assert ev.screen(CROSS_ENTROPY) is None
    assert ev.screen(parse("sub(square(y), add(f, sub(y, f)))")) == NO_PREDICTION  # f cancels out
    flat = ev.screen(parse("mul(y, sign(f))"))  # zero gradient everywhere: outputs never move
    assert flat is not None and "did not improve" in flat
    assert ev.evaluate([parse("square(y)")])[0].reason == NO_PREDICTION


def test_rejection_can_be_disabled():
    ev = evaluator(rejection={"enabled": False})
    assert ev.screen(parse("mul(y, sign(f))")) is None


def test_divergent_loss_gets_worst_fitness_without_crashing():
    ev = evaluator(task={"dataset": "diabetes", "model": "logistic", "max_train": None},
                   training={"lr": 0.05}, rejection={"enabled": False})
    exploding = parse("mul(-1, square(square(square(sub(f, y)))))")
    out = ev.evaluate([exploding, SQUARED_ERROR])
    assert out[0].fitness is None and out[0].reason == TRAINING_DIVERGED
    assert out[1].ok and math.isfinite(out[1].fitness)


def test_screen_reports_non_finite_losses():
    ev = evaluator(task={"dataset": "diabetes", "model": "logistic", "max_train": None},
                   training={"lr": 1.0})
    # f^256 overflows float32 for any starting output with |f| > 1.5
    power_256 = "f"
    for _ in range(8):
        power_256 = f"square({power_256})"
    assert ev.screen(parse(power_256)) == NON_FINITE


def test_train_returns_false_when_weights_blow_up():
    task = load_task(tiny_config(task={"dataset": "diabetes", "model": "logistic", "max_train": None}))
    model = task.new_model(0)
    loss = make_loss(parse("mul(-1, square(square(f)))"), "regression")
    ok = train(model, loss, task.splits.x_train, task.splits.y_train, TrainingConfig(steps=300, lr=1.0))
    assert ok is False


def test_momentum_and_weight_decay_change_training():
    task = load_task(tiny_config())
    loss = make_loss(CROSS_ENTROPY, "classification")
    finals = []
    for cfg in (TrainingConfig(steps=20), TrainingConfig(steps=20, momentum=0.9, nesterov=True),
                TrainingConfig(steps=20, weight_decay=0.1)):
        model = task.new_model(0)
        assert train(model, loss, task.splits.x_train, task.splits.y_train, cfg)
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.equal(finals[0], finals[1]) and not torch.equal(finals[0], finals[2])
