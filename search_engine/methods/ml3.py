"""ML3 (Bechtle et al., "Meta Learning via Learned Loss", ICPR 2020), the offline variant of EvoMAL's runner.

The loss is a small network (`expr.network.NetworkLoss`) applied to each class's pair (f_i, y_i)
and summed over classes, then averaged over the batch. f is the model's SOFTMAX PROBABILITIES and
y the one-hot target for classification (the reference converts logits to probabilities with a
softmax and one-hot encodes the labels before the network sees them); for regression the pair is
(prediction, target). Reference architecture: 2 -> 50 -> 50 -> 1 bias-free linear layers, ReLU,
softplus output, Kaiming-normal initialisation.

Its weights are learned by unrolled meta-gradients, with EvoMAL's own machinery
(`scoring.local_search`): meta step t re-initialises the task model from (seed, t), takes
ml3.inner_steps differentiable SGD steps (lr = training.lr, the configured momentum and weight
decay) with the network loss on training batches, measures the task loss (cross-entropy / MSE)
on a validation batch, and Adam (lr ml3.meta_lr) follows its gradient. A step whose meta-loss or
gradient is not finite makes no update.

Every ml3.report_every meta steps (one "generation" of the dashboard's curve) the current network
is scored like an EvoMAL candidate: a fresh model trained for training.steps from config.seed
with it, its validation metric. The hall of fame keeps the best network so far (one entry).

As a method of the one driver, a generation is one work item, the block of meta steps: it
carries the network's weights and Adam's state in, its outcome carries them out with the
network's fitness, so whichever process runs a block continues exactly where the last one
stopped (the meta step number is the whole random state, see `ml3_state`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from search_engine import catalog
from search_engine.config import ExperimentConfig, LocalSearchConfig
from search_engine.evolution.checkpoint import CheckpointError
from search_engine.evolution.events import CandidateEvaluated, GenerationFinished, HallOfFameEntry
from search_engine.expr.losses import make_loss
from search_engine.expr.network import (
    NetworkLoss,
    flat_network_loss,
    flat_size,
    make_network_loss,
    network_widths,
)
from search_engine.expr.tree import KNOWN_LOSSES
from search_engine.methods import ml3_state
from search_engine.methods.ml3_state import ML3State
from search_engine.methods.settings import generation_count
from search_engine.runtime import interrupt
from search_engine.scoring.local_search import _meta_gradient, _objective, step_seed
from search_engine.scoring.sequential import TRAINING_DIVERGED
from search_engine.study.method import Method
from search_engine.tasks.training import LossFn, evaluate_metric, train

_INIT_STREAM = 4  # the loss network's initial weights (streams 0-3 are a meta step's, see local_search)


def report_count(config: ExperimentConfig) -> int:
    """How many reports ("generations") a run makes: one per ml3.report_every meta steps, the last maybe shorter."""
    return generation_count(config.to_dict())


def widths_of(config: ExperimentConfig) -> tuple[int, ...]:
    return network_widths(config.ml3.hidden_units, config.ml3.hidden_layers)


def initial_weights(widths: tuple[int, ...], seed: int) -> Tensor:
    """Kaiming-normal weights, layer after layer: N(0, 2 / fan_in), from a generator seeded by `seed`.

    Returns the flat (P,) vector in `NetworkLoss.flat` order (torch's kaiming_normal_ default: fan-in, ReLU gain).
    """
    gen = torch.Generator().manual_seed(step_seed(seed, 0, _INIT_STREAM))
    parts = [torch.randn(n_out * n_in, generator=gen) * math.sqrt(2.0 / n_in)
             for n_in, n_out in zip(widths[:-1], widths[1:])]
    return torch.cat(parts)


def meta_loss(task, weights: Tensor, config: ExperimentConfig, step: int) -> Tensor:
    """Meta step `step`'s objective: validation task loss after ml3.inner_steps SGD steps with the network
    loss of flat `weights` (differentiable with respect to them); deterministic in (config.seed, step)."""
    m = config.ml3
    inner = LocalSearchConfig(meta_steps=m.meta_steps, inner_steps=m.inner_steps, meta_lr=m.meta_lr,
                              batch_size=m.batch_size)
    loss = flat_network_loss(widths_of(config), task.kind)
    return _objective(task, loss, weights, inner, config.training, config.seed, step)


def fitness_of(task, config: ExperimentConfig, loss_fn: LossFn) -> float | None:
    """EvoMAL's fitness of a loss: validation metric of a model trained with it from config.seed; None if it diverged."""
    s = task.splits
    model = task.new_model(config.seed)
    if not train(model, loss_fn, s.x_train, s.y_train, config.training, data_seed=config.seed):
        return None
    value = evaluate_metric(model, s.x_val, s.y_val, task.kind)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Block:
    """A generation's work: the meta steps of report `report`, from these weights and Adam state."""

    report: int
    weights: tuple[float, ...]  # the loss network's weights, `NetworkLoss.flat` order
    adam: dict | None  # {"step", "exp_avg", "exp_avg_sq"}; None before the first meta step
    index: int = 0  # one item per generation


@dataclass(frozen=True)
class BlockOutcome:
    """What a block left: the weights and Adam state after it, and the network's fitness (None: diverged,
    or the block failed: then `weights` is None and `reason` says why)."""

    weights: tuple[float, ...] | None
    adam: dict | None
    fitness: float | None
    reason: str | None = None


class _Learner:
    """The loss network's weights (a leaf tensor) and their Adam optimizer, to and from an ML3State."""

    def __init__(self, block: Block, config: ExperimentConfig, dtype: torch.dtype, device: torch.device):
        self.config = config
        self.weights = torch.tensor(block.weights, dtype=dtype, device=device).requires_grad_(True)  # (P,)
        self.optimizer = torch.optim.Adam([self.weights], lr=config.ml3.meta_lr)
        if block.adam is not None:
            saved = self.optimizer.state_dict()
            saved["state"] = {0: {
                "step": torch.tensor(float(block.adam["step"])),
                "exp_avg": torch.tensor(block.adam["exp_avg"], dtype=dtype, device=device),
                "exp_avg_sq": torch.tensor(block.adam["exp_avg_sq"], dtype=dtype, device=device),
            }}
            self.optimizer.load_state_dict(saved)

    def step(self, task, step: int) -> None:
        """One meta step; no update when its meta-loss or gradient (or the updated weights) are not finite."""
        value = meta_loss(task, self.weights, self.config, step)
        grad = _meta_gradient(value, self.weights)
        if not bool(torch.isfinite(value) & torch.isfinite(grad).all()):
            return
        last = self.weights.detach().clone()
        self.weights.grad = grad
        self.optimizer.step()
        if not bool(torch.isfinite(self.weights).all()):  # defensive: never keep non-finite weights
            with torch.no_grad():
                self.weights.copy_(last)

    def adam_state(self) -> dict | None:
        adam = self.optimizer.state_dict()["state"].get(0)
        return None if adam is None else {
            "step": float(adam["step"]), "exp_avg": adam["exp_avg"].cpu().tolist(),
            "exp_avg_sq": adam["exp_avg_sq"].cpu().tolist(),
        }


class Runner:
    """ML3's evaluator: runs blocks of meta steps on the task, and scores losses as EvoMAL does."""

    chunk_size = 1

    def __init__(self, task, config: ExperimentConfig):
        self.task, self.config = task, config
        x = task.splits.x_train
        self.dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()

    def run_block(self, block: Block) -> BlockOutcome:
        """The block's meta steps, then the network's fitness; `interrupt.Stopped` from inside drops it."""
        learner, m = _Learner(block, self.config, self.dtype, self.task.device), self.config.ml3
        for step in range(block.report * m.report_every, min((block.report + 1) * m.report_every, m.meta_steps)):
            interrupt.check(step)
            learner.step(self.task, step)
        weights = learner.weights.detach().cpu().tolist()
        net = NetworkLoss.from_flat(weights, widths_of(self.config))
        fitness = fitness_of(self.task, self.config, make_network_loss(net, self.task.kind, device=self.task.device))
        return BlockOutcome(tuple(weights), learner.adam_state(), fitness)


@dataclass(frozen=True)
class ML3Method(Method):
    """The ML3 method: each generation one block of meta steps, then the network scored."""

    name: str = "ml3"
    extendable: tuple[str, str] = ("ml3", "meta_steps")

    def population_size(self, config) -> int:
        return 1

    def make_evaluator(self, task, config, saved_plan):
        return Runner(task, config)

    def plan_record(self, evaluator, device) -> dict:
        return {"strategy": "sequential", "device": device.type}

    def baseline_fitness(self, task, config, evaluator):
        """The baseline loss's fitness, trained as every network is scored."""
        return fitness_of(task, config, make_loss(KNOWN_LOSSES[catalog.baseline_name(task.kind)], task.kind))

    def fresh_state(self, config, kind, baseline_fitness):
        """Initial weights from the seed, and the baseline's fitness (what the network must beat)."""
        return ML3State(config=config.to_dict(), next_report=0,
                        weights=initial_weights(widths_of(config), config.seed).tolist(),
                        baseline_fitness=baseline_fitness)

    def check_resumable(self, state, config) -> None:
        if len(state.weights) != flat_size(widths_of(config)):
            raise CheckpointError("the ML3 checkpoint's loss network does not have the configured architecture")

    def state_to_dict(self, state):
        return ml3_state.state_to_dict(state)

    def state_from_dict(self, data):
        return ml3_state.state_from_dict(data)

    def next_generation(self, state) -> int:
        return state.next_report

    def is_finished(self, state) -> bool:
        return state.next_report >= generation_count(state.config)

    def work(self, state, phase, chunk_size):
        if state.block_done:
            return []
        return [[Block(state.next_report, tuple(state.weights), state.adam)]]

    def evaluate(self, evaluator, phase, items):
        return [evaluator.run_block(block) for block in items]

    def apply(self, state, phase, outcomes):
        """The block's weights, Adam state and fitness into the state (once); its CandidateEvaluated."""
        if state.block_done or 0 not in outcomes:
            return []
        outcome = outcomes[0]
        if outcome.weights is not None:  # None: the block failed, the network stays as it was
            state.weights, state.adam = list(outcome.weights), outcome.adam
        state.block_done, state.block_fitness = True, outcome.fitness
        net = _network(state)
        latex, fitness = net.latex(), outcome.fitness
        state.totals["evaluated"] += 1
        state.totals["rejected"] += int(fitness is None)
        if fitness is not None and (not state.hall_of_fame or fitness < state.hall_of_fame[0].fitness):
            state.hall_of_fame = [HallOfFameEntry(
                net.expression, net.expression, latex, fitness, net.n_weights, state.next_report, None, net.to_dict())]
        return [CandidateEvaluated(
            generation=state.next_report, index=0, expression=net.expression, canonical_key=net.expression,
            latex=latex, fitness=fitness,
            rejection_reason=None if fitness is not None else (outcome.reason or TRAINING_DIVERGED),
            cache_hit=False,
        )]

    def finish_generation(self, state, seconds):
        fitness, report = state.block_fitness, state.next_report
        net = _network(state)
        summary = GenerationFinished(
            generation=report, best_fitness=fitness, mean_fitness=fitness, median_fitness=fitness, evaluated=1,
            rejected=int(fitness is None), cache_hits=0, best_expression=net.expression if fitness is not None else None,
            best_latex=net.latex() if fitness is not None else None, hall_of_fame=tuple(state.hall_of_fame),
            seconds=seconds,
        )
        state.history.append(summary)
        state.next_report, state.block_done, state.block_fitness = report + 1, False, None
        return summary

    def item_to_dict(self, item) -> dict:
        return {"report": item.report, "weights": list(item.weights), "adam": item.adam, "index": item.index}

    def item_from_dict(self, data):
        return Block(int(data["report"]), tuple(float(w) for w in data["weights"]), data["adam"], int(data["index"]))

    def outcome_to_dict(self, outcome) -> dict:
        weights = None if outcome.weights is None else list(outcome.weights)
        return {"weights": weights, "adam": outcome.adam, "fitness": outcome.fitness, "reason": outcome.reason}

    def outcome_from_dict(self, data):
        weights = data.get("weights")
        return BlockOutcome(None if weights is None else tuple(float(w) for w in weights), data.get("adam"),
                            data.get("fitness"), data.get("reason"))

    def failed_outcome(self, reason: str) -> dict:
        return {"weights": None, "adam": None, "fitness": None, "reason": reason}


def _network(state) -> NetworkLoss:
    """The loss network the state's weights make (its widths read off the stored configuration)."""
    ml3 = state.config["ml3"]
    return NetworkLoss.from_flat(list(state.weights), network_widths(ml3["hidden_units"], ml3["hidden_layers"]))


ML3 = ML3Method()
