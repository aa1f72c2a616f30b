"""`BatchedEvaluator`: the sequential evaluator's order and results for chunks of candidates.

Cache -> rejection -> local search -> fitness, as in `scoring.sequential`, but the rejection
screen of a chunk runs as one program, and local search and fitness train whole chunks as one
population (`population/`). A chunk that runs out of GPU memory is halved and retried. How big
the chunks are is the `Plan` that `scoring.plan` chooses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from search_engine.config import ExperimentConfig
from search_engine.expr.tree import Node
from search_engine.population.local_search import local_search_population, meta_chunk
from search_engine.population.training import population_loss, score_population, screen_population
from search_engine.scoring.local_search import local_search
from search_engine.scoring.sequential import TRAINING_DIVERGED, Outcome, SequentialEvaluator, loss_for
from search_engine.tasks.task import Task


@dataclass(frozen=True)
class Plan:
    """How a BatchedEvaluator trains: populations of `min_batch`..`chunk` members, fewer run sequentially."""

    chunk: int  # most candidates per program (the evaluator's chunk_size)
    min_batch: int  # fewer pending candidates than this are trained one by one
    reason: str  # how it was decided, for logs and the benchmark



class BatchedEvaluator(SequentialEvaluator):
    """`SequentialEvaluator`'s interface and results, with whole chunks screened and trained at once.

    Single-candidate calls (`fitness`, `refine`, used for the baseline and top-k refinement)
    and chunks smaller than `plan.min_batch` take the sequential path.
    """

    def __init__(self, task: Task, config: ExperimentConfig, plan: Plan, rate_record: dict | None = None):
        super().__init__(task, config, rate_record)
        self.plan = plan
        self.chunk_size = plan.chunk

    def screen_many(self, trees: Sequence[Node]) -> list[str | None]:
        """The rejection protocol for all `trees` in one program."""
        rej = self.config.rejection
        if not rej.enabled:
            return [None] * len(trees)
        return screen_population(trees, self.task.kind, self._screen_targets, self._screen_start,
                                 steps=rej.steps, lr=self._screen_lr)

    def fitness_many(self, trees: Sequence[Node], weights: Sequence[tuple[float, ...] | None]) -> list[Outcome]:
        """`fitness` of each tree (with its weights), in population programs of at most `plan.chunk`."""
        return _in_chunks(self._fitness_chunk, list(zip(trees, weights)), self.plan.chunk)

    def _fitness_chunk(self, items: list[tuple[Node, tuple[float, ...] | None]]) -> list[Outcome]:
        """One population program (or the sequential path for fewer than `plan.min_batch`)."""
        if len(items) < self.plan.min_batch:
            return [self.fitness(t, w) for t, w in items]
        cfg, dev = self.config, self.task.device
        trees, weights = [t for t, _ in items], [w for _, w in items]
        tensors = [None if w is None else torch.tensor(w, dtype=torch.float32, device=dev) for w in weights]
        scales = [self.scale_of(loss_for(t, self.task.kind, w, dev)) for t, w in items]
        loss = _scaled_population(population_loss(trees, self.task.kind, tensors), scales, dev)
        scored = score_population(self.task.new_model(cfg.seed), loss, len(trees), self.task.splits,
                                  self.task.kind, cfg.training, cfg.seed)
        return [Outcome(v, None, w, sc, tb) if v is not None else Outcome(None, TRAINING_DIVERGED, w, sc)
                for (v, tb), w, sc in zip(scored, weights, scales)]

    def refine_many(self, trees: Sequence[Node]) -> list[Outcome]:
        """Local search for every tree (in memory-sized chunks), then fitness with the learned weights."""
        size = meta_chunk(self.task, self.config.local_search, self.plan.chunk)
        found = _in_chunks(self._local_search_chunk, list(trees), size)
        return self.fitness_many(trees, [f.weights for f in found])

    def _local_search_chunk(self, trees: list[Node]) -> list:
        """One batched local search (or per-candidate ones for fewer than `plan.min_batch`)."""
        cfg = self.config
        if len(trees) < self.plan.min_batch:
            return [local_search(self.task, t, cfg.local_search, cfg.training, seed=cfg.seed, probe=self.probe)
                    for t in trees]
        return local_search_population(self.task, trees, cfg.local_search, cfg.training, cfg.seed, probe=self.probe)

    def evaluate(self, trees: Sequence[Node]) -> list[Outcome]:
        """Screen all, then (local search when mode is "all") and train the survivors together."""
        trees = list(trees)
        reasons = self.screen_many(trees) if len(trees) > 1 else [self.screen(t) for t in trees]
        keep = [i for i, r in enumerate(reasons) if not r]
        survivors = [trees[i] for i in keep]
        if self.config.local_search.mode == "all":
            scored = self.refine_many(survivors)
        else:
            scored = self.fitness_many(survivors, [None] * len(survivors))
        outcomes = [Outcome(None, r) for r in reasons]
        for i, outcome in zip(keep, scored):
            outcomes[i] = outcome
        return outcomes


def _scaled_population(loss, scales: list[float | None], device):
    """The population loss with member p multiplied by scales[p] (unchanged when no member is scaled)."""
    if all(sc is None for sc in scales):
        return loss
    factors = torch.tensor([1.0 if sc is None else sc for sc in scales], dtype=torch.float32, device=device)  # (P,)
    return lambda outputs, targets: loss(outputs, targets) * factors


def _in_chunks(fn: Callable[[list], list], items: list, size: int) -> list:
    """`fn` over consecutive chunks of at most `size` items; a chunk that runs out of GPU memory is halved."""
    out: list = []
    for i in range(0, len(items), size):
        out += _halving_on_oom(fn, items[i : i + size])
    return out


def _halving_on_oom(fn: Callable[[list], list], part: list) -> list:
    """fn(part), or fn on each half (recursively) if the GPU runs out of memory."""
    try:
        return fn(part)
    except torch.cuda.OutOfMemoryError:
        if len(part) == 1:
            raise
        torch.cuda.empty_cache()
        half = len(part) // 2
        return _halving_on_oom(fn, part[:half]) + _halving_on_oom(fn, part[half:])
