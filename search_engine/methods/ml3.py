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

import dataclasses
from dataclasses import dataclass

from search_engine import catalog
from search_engine.config import ExperimentConfig
from search_engine.evolution.checkpoint import CheckpointError
from search_engine.evolution.events import CandidateEvaluated, GenerationFinished, HallOfFameEntry
from search_engine.expr.network import NetworkLoss, flat_size, network_widths
from search_engine.methods import ml3_state
from search_engine.methods.ml3_state import Block, BlockOutcome, ML3State
from search_engine.methods.settings import ML3Settings
from search_engine.scoring.outcome import TRAINING_DIVERGED
from search_engine.study.method import STEP_LABELS, Method, WorkCounts


def report_count(config: ExperimentConfig) -> int:
    """How many reports ("generations") a run makes: one per ml3.report_every meta steps, the last maybe shorter."""
    return ML3.generations(config)


def _stored_settings(stored: dict) -> dict:
    """The ml3 section of a stored (JSON) configuration, its defaults filled in."""
    return {**dataclasses.asdict(ML3Settings()), **stored.get("ml3", {})}


@dataclass(frozen=True)
class ML3Method(Method):
    """The ML3 method: each generation one block of meta steps, then the network scored."""

    name: str = "ml3"
    extendable: tuple[str, str] = ("ml3", "meta_steps")

    def population_size(self, config) -> int:
        return 1

    def generation_count(self, stored: dict) -> int:
        """Reports: one per ml3.report_every meta steps, the last maybe shorter."""
        ml3 = _stored_settings(stored)
        return -(-int(ml3["meta_steps"]) // int(ml3["report_every"]))

    def planned_work(self, config) -> WorkCounts:
        """Each report scores the network so far; the meta-training unrolls ml3.inner_steps per meta step;
        the network is meta-tested beside the baseline."""
        m = config.ml3
        return WorkCounts(-(-m.meta_steps // m.report_every), 0, 0, m.meta_steps * m.inner_steps,
                          config.meta_test.seeds * 2)

    def step_labels(self) -> dict[str, str]:
        """Its unrolled steps are the method itself (meta-training), not a refinement; it screens nothing."""
        return {"fitness_steps": STEP_LABELS["fitness_steps"], "local_search_steps": "meta-training",
                "meta_test_steps": STEP_LABELS["meta_test_steps"]}

    def network_weight_count(self, stored: dict) -> int | None:
        ml3 = _stored_settings(stored)
        return flat_size(network_widths(int(ml3["hidden_units"]), int(ml3["hidden_layers"])))

    def make_evaluator(self, task, config, saved_plan):
        from search_engine.methods.ml3_runner import Runner

        return Runner(task, config)

    def plan_record(self, evaluator, device) -> dict:
        return {"strategy": "sequential", "device": device.type}

    def baseline_fitness(self, task, config, evaluator):
        """The baseline loss's fitness, trained as every network is scored."""
        from search_engine.expr.losses import make_loss
        from search_engine.expr.tree import KNOWN_LOSSES
        from search_engine.methods.ml3_runner import fitness_of

        return fitness_of(task, config, make_loss(KNOWN_LOSSES[catalog.baseline_name(task.kind)], task.kind))

    def fresh_state(self, config, kind, baseline_fitness):
        """Initial weights from the seed, and the baseline's fitness (what the network must beat)."""
        from search_engine.methods.ml3_runner import initial_weights, widths_of

        return ML3State(config=config.to_dict(), next_report=0,
                        weights=initial_weights(widths_of(config), config.seed).tolist(),
                        baseline_fitness=baseline_fitness)

    def check_resumable(self, state, config) -> None:
        if len(state.weights) != flat_size(network_widths(config.ml3.hidden_units, config.ml3.hidden_layers)):
            raise CheckpointError("the ML3 checkpoint's loss network does not have the configured architecture")

    def state_to_dict(self, state):
        return ml3_state.state_to_dict(state)

    def state_from_dict(self, data):
        return ml3_state.state_from_dict(data)

    def next_generation(self, state) -> int:
        return state.next_report

    def is_finished(self, state) -> bool:
        return state.next_report >= self.generation_count(state.config)

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
