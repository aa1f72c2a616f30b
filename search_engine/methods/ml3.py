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
with it, its validation metric. The hall of fame keeps the best network so far (one entry), a
checkpoint is written, and the events are those of `run_search`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from search_engine import catalog
from search_engine.config import ExperimentConfig, LocalSearchConfig, load_config
from search_engine.evolution.events import (
    CandidateEvaluated,
    GenerationFinished,
    HallOfFameEntry,
    SearchFinished,
    SearchStarted,
)
from search_engine.evolution.loop import SearchResult, _stopped_while_preparing, check_same_experiment
from search_engine.expr.losses import make_loss
from search_engine.expr.network import (
    NetworkLoss,
    flat_network_loss,
    flat_size,
    make_network_loss,
    network_widths,
)
from search_engine.expr.tree import KNOWN_LOSSES
from search_engine.methods.ml3_state import ML3State, load, save
from search_engine.methods.settings import generation_count
from search_engine.runtime import interrupt
from search_engine.runtime.allocator import keep_freed_memory
from search_engine.scoring.local_search import _meta_gradient, _objective, step_seed
from search_engine.scoring.sequential import TRAINING_DIVERGED
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


class _Learner:
    """The loss network's weights (a leaf tensor) and their Adam optimizer, to and from an ML3State."""

    def __init__(self, state: ML3State, config: ExperimentConfig, dtype: torch.dtype, device: torch.device):
        self.config = config
        self.weights = torch.tensor(state.weights, dtype=dtype, device=device).requires_grad_(True)  # (P,)
        self.optimizer = torch.optim.Adam([self.weights], lr=config.ml3.meta_lr)
        if state.adam is not None:
            saved = self.optimizer.state_dict()
            saved["state"] = {0: {
                "step": torch.tensor(float(state.adam["step"])),
                "exp_avg": torch.tensor(state.adam["exp_avg"], dtype=dtype, device=device),
                "exp_avg_sq": torch.tensor(state.adam["exp_avg_sq"], dtype=dtype, device=device),
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

    def network(self) -> NetworkLoss:
        return NetworkLoss.from_flat(self.weights.detach().cpu().tolist(), widths_of(self.config))

    def save_into(self, state: ML3State) -> None:
        state.weights = self.weights.detach().cpu().tolist()
        adam = self.optimizer.state_dict()["state"].get(0)
        state.adam = None if adam is None else {
            "step": float(adam["step"]), "exp_avg": adam["exp_avg"].cpu().tolist(),
            "exp_avg_sq": adam["exp_avg_sq"].cpu().tolist(),
        }


def _fresh_state(config: ExperimentConfig, task) -> ML3State:
    """Initial weights from the seed, and the baseline loss's fitness (what the network must beat)."""
    baseline = make_loss(KNOWN_LOSSES[catalog.baseline_name(task.kind)], task.kind)
    return ML3State(
        config=config.to_dict(), next_report=0, weights=initial_weights(widths_of(config), config.seed).tolist(),
        baseline_fitness=fitness_of(task, config, baseline), plan={"strategy": "sequential", "device": task.device.type},
    )


def _saved_state(config: ExperimentConfig, checkpoint_path, resume: bool) -> ML3State | None:
    """The checkpoint to continue, if resuming and one exists (its configuration must be this one)."""
    if not (resume and checkpoint_path and Path(checkpoint_path).exists()):
        return None
    state = load(Path(checkpoint_path))
    check_same_experiment(load_config(state.config, check_data=False).to_dict(), config.to_dict())
    if len(state.weights) != flat_size(widths_of(config)):
        raise ValueError("the ML3 checkpoint's loss network does not have the configured architecture")
    state.config = config.to_dict()
    return state


def _run_block(config: ExperimentConfig, state: ML3State, learner: _Learner, task, emit) -> None:
    """Meta steps of report `state.next_report`, then the network's fitness and the report's events.

    Raises `interrupt.Stopped` when a stop request arrives inside (the block is then not recorded).
    """
    t0, m, report = time.perf_counter(), config.ml3, state.next_report
    for step in range(report * m.report_every, min((report + 1) * m.report_every, m.meta_steps)):
        interrupt.check(step)
        learner.step(task, step)
    net = learner.network()
    fitness = fitness_of(task, config, make_network_loss(net, task.kind, device=task.device))
    learner.save_into(state)
    _record_report(state, report, net, fitness, emit, time.perf_counter() - t0)


def _block_finished(config, state: ML3State, learner: _Learner, task, emit, stop) -> bool:
    """Run the next block unless a stop request comes first or arrives inside it; whether it finished."""
    if stop():
        return False
    try:
        _run_block(config, state, learner, task, emit)
    except interrupt.Stopped:  # the unfinished block is dropped; the state is that of the last report
        return False
    return True


def _record_report(state: ML3State, report: int, net: NetworkLoss, fitness, emit, seconds: float) -> None:
    """Hall of fame, counts, history; the report's CandidateEvaluated and GenerationFinished events."""
    latex = net.latex()
    state.totals["evaluated"] += 1
    state.totals["rejected"] += int(fitness is None)
    if fitness is not None and (not state.hall_of_fame or fitness < state.hall_of_fame[0].fitness):
        state.hall_of_fame = [HallOfFameEntry(
            net.expression, net.expression, latex, fitness, net.n_weights, report, None, net.to_dict())]
    emit(CandidateEvaluated(
        generation=report, index=0, expression=net.expression, canonical_key=net.expression, latex=latex,
        fitness=fitness, rejection_reason=None if fitness is not None else TRAINING_DIVERGED, cache_hit=False,
    ))
    summary = GenerationFinished(
        generation=report, best_fitness=fitness, mean_fitness=fitness, median_fitness=fitness, evaluated=1,
        rejected=int(fitness is None), cache_hits=0, best_expression=net.expression if fitness is not None else None,
        best_latex=latex if fitness is not None else None, hall_of_fame=tuple(state.hall_of_fame), seconds=seconds,
    )
    state.history.append(summary)
    state.next_report = report + 1
    emit(summary)


@dataclass(frozen=True)
class ML3Strategy:
    """Strategy object of `methods.registry`: `run` has `evolution.loop.run_search`'s contract."""

    name: str = "ml3"

    def run(self, config, on_event=None, should_stop=None, *, checkpoint_path=None, resume=False) -> SearchResult:
        """Learn a network loss; events through on_event, a stop through should_stop (polled between blocks
        and every few steps inside them), a checkpoint after every report block, resume from it."""
        from search_engine.tasks.task import load_task  # heavy: only when a run actually starts

        if not isinstance(config, ExperimentConfig):
            config = load_config(config)
        keep_freed_memory()
        emit, stop = on_event or (lambda event: None), should_stop or (lambda: False)
        started, status = time.perf_counter(), "completed"
        with interrupt.watching(stop):
            saved = _saved_state(config, checkpoint_path, resume)
            try:
                task = load_task(config)
                state = saved or _fresh_state(config, task)
            except interrupt.Stopped:
                return _stopped_while_preparing(config, emit, started)
            x = task.splits.x_train
            learner = _Learner(state, config, x.dtype if x.is_floating_point() else torch.get_default_dtype(),
                               task.device)
            emit(SearchStarted(
                config=config.to_dict(), generations=report_count(config), population_size=1,
                start_generation=state.next_report, baseline_loss=catalog.baseline_name(task.kind),
                baseline_fitness=state.baseline_fitness, plan=state.plan,
            ))
            while state.next_report < report_count(config):
                if not _block_finished(config, state, learner, task, emit, stop):
                    status = "stopped"
                    break
                if checkpoint_path:
                    save(Path(checkpoint_path), state)
        return _finish(config, state, status, task.kind, started, emit)


def _finish(config: ExperimentConfig, state: ML3State, status: str, kind: str, started: float, emit) -> SearchResult:
    best = state.hall_of_fame[0] if state.hall_of_fame else None
    emit(SearchFinished(status=status, generations_completed=len(state.history), best=best, **state.totals))
    return SearchResult(
        config=config.to_dict(), status=status, best=best, hall_of_fame=tuple(state.hall_of_fame),
        history=tuple(state.history), totals=dict(state.totals), baseline_loss=catalog.baseline_name(kind),
        baseline_fitness=state.baseline_fitness, seconds=time.perf_counter() - started, plan=state.plan,
    )


ML3 = ML3Strategy()
