"""Meta-testing: train models from scratch with a loss and measure them on held-out test data.

The learned loss and the baseline (cross-entropy or squared error) are trained on the same seeds,
so each seed gives a pair and `compare` can run a paired test.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from search_engine.config import ExperimentConfig
from search_engine.scoring import protocol
from search_engine.scoring.tuned_lr import at_rate, tune_rates, tuning_seeds
from search_engine.tasks.task import Task
from search_engine.tasks.training import LossFn, evaluate_metric, train


@dataclass(frozen=True)
class Comparison:
    """Learned vs baseline test metric over paired seeds (lower is better)."""

    metric: str
    seeds: tuple[int, ...]
    learned: tuple[float | None, ...]  # None: training diverged
    baseline: tuple[float | None, ...]
    learned_mean: float | None
    learned_std: float | None
    baseline_mean: float | None
    baseline_std: float | None
    wins: int  # seeds on which the learned loss is strictly better
    t_statistic: float | None  # paired t-test on (learned - baseline)
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        """Rebuild from `to_dict()` output (extra keys such as "symbolic" are ignored)."""
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in data.items() if k in names}
        return cls(**{**d, "seeds": tuple(d["seeds"]), "learned": tuple(d["learned"]),
                      "baseline": tuple(d["baseline"])})

    def summary(self) -> str:
        def ms(m, s):
            return "n/a" if m is None else f"{m:.4f} ± {s:.4f}"

        p = "n/a" if self.p_value is None else f"{self.p_value:.3g}"
        return (
            f"test {self.metric}: learned {ms(self.learned_mean, self.learned_std)} vs baseline "
            f"{ms(self.baseline_mean, self.baseline_std)} over {len(self.seeds)} seeds; "
            f"learned better on {self.wins}/{len(self.seeds)}; paired t-test p = {p}"
        )


def meta_seeds(config: ExperimentConfig, n: int) -> tuple[int, ...]:
    """Seeds for meta-testing, disjoint from the search's own seed."""
    return tuple(config.seed + 1000 + i for i in range(n))


def held_out_metric(task: Task, loss_fn: LossFn, config: ExperimentConfig, seed: int, steps: int) -> float | None:
    """Train a fresh model with `loss_fn` on the training split; test-split metric, None if it diverged."""
    s = task.splits
    model = task.new_model(seed)
    m = config.meta_test
    if not train(model, loss_fn, s.x_train, s.y_train, config.training, steps=steps, data_seed=seed,
                 lr_milestones=tuple(m.lr_milestones), lr_gamma=m.lr_gamma):
        return None
    value = evaluate_metric(model, s.x_test, s.y_test, task.kind)
    return value if math.isfinite(value) else None


def run_meta_test(
    task: Task, config: ExperimentConfig, losses: dict[str, LossFn], *,
    seeds: Sequence[int], steps: int, on_seed: Callable[[int], None] | None = None,
    rates: dict[str, float] | None = None, done: dict[tuple[str, float, int], float | None] | None = None,
) -> dict[str, list[float | None]]:
    """Train with each named loss on every seed; the test-split metric per loss, in seed order.

    With `rates`, the loss of each name given trains at that learning rate instead of training.lr.
    `done` maps (name, learning rate, seed) to a metric already measured for that very loss and
    configuration with these steps: such a run is taken from it instead of trained again, and every
    run trained here is added to it.
    """
    rates = rates or {}
    done = {} if done is None else done
    results: dict[str, list[float | None]] = {name: [] for name in losses}
    for seed in seeds:
        for name, loss_fn in losses.items():
            cfg = at_rate(config, rates[name]) if name in rates else config
            key = (name, cfg.training.lr, seed)
            if key not in done:
                done[key] = held_out_metric(task, loss_fn, cfg, seed, steps)
            results[name].append(done[key])
        if on_seed:
            on_seed(seed)
    return results


def meta_test(
    task: Task, config: ExperimentConfig, learned: LossFn, baseline: LossFn, *,
    seeds: Sequence[int], steps: int, on_seed: Callable[[int], None] | None = None,
) -> Comparison:
    """Train with the learned loss and the baseline on each seed and compare on the test split."""
    r = run_meta_test(task, config, {"learned": learned, "baseline": baseline}, seeds=seeds, steps=steps,
                      on_seed=on_seed)
    return compare(r["learned"], r["baseline"], seeds=tuple(seeds), metric=task.metric_name)


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    if not values or any(v is None for v in values):
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def compare(
    learned: Sequence[float | None], baseline: Sequence[float | None], *, seeds: tuple[int, ...], metric: str
) -> Comparison:
    """Mean ± std of each, wins of the learned loss, and a paired t-test where it is defined."""
    from scipy import stats

    lm, ls = _mean_std(learned)
    bm, bs = _mean_std(baseline)
    wins = sum(a is not None and (b is None or a < b) for a, b in zip(learned, baseline))
    t = p = None
    complete = [(a, b) for a, b in zip(learned, baseline) if a is not None and b is not None]
    diffs = [a - b for a, b in complete]
    if len(complete) >= 2 and any(d != diffs[0] for d in diffs):
        res = stats.ttest_rel([a for a, _ in complete], [b for _, b in complete])
        t, p = float(res.statistic), float(res.pvalue)
    return Comparison(
        metric=metric, seeds=seeds, learned=tuple(learned), baseline=tuple(baseline),
        learned_mean=lm, learned_std=ls, baseline_mean=bm, baseline_std=bs, wins=wins,
        t_statistic=t, p_value=p,
    )


def evaluate_learned_loss(
    task: Task, config: ExperimentConfig, expression: str, weights: Sequence[float] | None, baseline: str, *,
    seeds: int | None = None, steps: int | None = None, on_seed: Callable[[int], None] | None = None,
    network: dict | None = None, tune_lr: bool | None = None, search_rate: float | None = None,
    on_phase: Callable[[str], None] | None = None, tuning: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """Meta-test a learned loss against the baseline, as stored in result.json and in the web app.

    `on_phase(name)` is told as each part begins: "search_rate" (the seeds at the search's rate),
    "tuning" (every rate on validation data), "tuned_seeds" (the seeds at the tuned rates); with it,
    `on_seed` counts the seeds of both seed phases (each from the start), without it only the first's.

    The first comparison is at the search's learning rate with the loss as the search trained it:
    under the tuned protocol (`training.lr_protocol`) that is the baseline's best rate (`search_rate`,
    the one in the search's plan; chosen again when not given) with each expression loss scaled to
    the baseline's gradient size (`protocol.GradientProbe`); under the fixed protocol (the paper's)
    `training.lr` and the losses as they are. "search_lr" records that rate.

    Trains with the learned loss (with its weights) and with the baseline on paired seeds; when
    the configuration's method refines a symbolic loss's weights (EvoMAL), also with the same
    expression at all weights 1 (under "symbolic"). With `network` (a network loss's JSON form, as
    a hall-of-fame entry holds it), the learned loss is that network and `expression` only names
    it. With `tune_lr` (default `meta_test.tune_lr`, on unless configured off), the learned loss and
    the baseline are also meta-tested each at its own best learning rate, picked on validation data
    (`tuned_lr`: every rate on two tuning seeds), under "tuned_lr" with the rates chosen, every rate
    tried ("tried": its score; "by_seed": its metric on each of "tuning_seeds"): the comparison that
    reports lead with (`verdict`). "rescales_baseline" is c where the loss only rescales the
    baseline (its gradient is c times the baseline's, see `baseline_rescale`), else None.
    `tuning`: `tuned_lr.tune_rates`'s answers for "learned" and "baseline", already computed for
    these losses, this configuration and `steps` (the final choice tunes both): used as they are,
    in place of training every rate again. Entries that do not match (other tuning seeds) are
    tuned here.
    """
    from search_engine import catalog
    from search_engine.expr.tree import KNOWN_LOSSES
    from search_engine.scoring.sequential import loss_for

    seed_list = meta_seeds(config, seeds or config.meta_test.seeds)
    steps = steps or config.meta_test.steps
    refined = catalog.METHODS[config.method].refines_weights
    losses = _learned_losses(task, expression, weights, network, with_symbolic=refined)
    searched, losses = _as_searched(task, config, losses, network is None, search_rate)
    losses["baseline"] = loss_for(KNOWN_LOSSES[baseline], task.kind, None, task.device)
    phase = on_phase or (lambda name: None)
    phase("search_rate")
    # Runs of a loss at a rate on a seed are kept: where a tuned rate is the search's rate, the
    # meta-test at tuned rates takes them rather than training the same models again.
    done: dict[tuple[str, float, int], float | None] = {}
    runs = run_meta_test(task, searched, losses, seeds=seed_list, steps=steps, on_seed=on_seed, done=done)
    record = {"expression": expression, "steps": steps, "search_lr": searched.training.lr,
              **compare(runs["learned"], runs["baseline"], seeds=seed_list, metric=task.metric_name).to_dict()}
    if "symbolic" in runs:
        record["symbolic"] = compare(runs["symbolic"], runs["baseline"], seeds=seed_list,
                                     metric=task.metric_name).to_dict()
    if config.meta_test.tune_lr if tune_lr is None else tune_lr:
        record["tuned_lr"] = _at_tuned_rates(task, config, losses, seed_list, steps, phase,
                                             on_seed if on_phase else None, tuning, done)
    record["rescales_baseline"] = baseline_rescale(task, expression, weights, network)
    return record


def _as_searched(task: Task, config: ExperimentConfig, losses: dict[str, LossFn], expression_loss: bool,
                 search_rate: float | None) -> tuple[ExperimentConfig, dict[str, LossFn]]:
    """The configuration at the search's rate, and the losses as the search trained them (see
    `evaluate_learned_loss`). A network loss (ML3) was scored at training.lr, as it is."""
    if not protocol.is_tuned(config) or not expression_loss:
        return config, losses
    lr = search_rate if search_rate is not None else protocol.search_rate(task, config)[0]
    probe = protocol.GradientProbe.for_task(task, config)
    scaled = {name: protocol.scaled(fn, probe.scale(fn)) for name, fn in losses.items()}
    return protocol.tuned_config(config, lr), scaled


def baseline_rescale(task: Task, expression: str, weights: Sequence[float] | None,
                     network: dict | None) -> float | None:
    """c where the loss's gradient with respect to the model's outputs is c times the baseline's on
    the gradient probe's fixed batch (`expr.gradient_probe.rescales_baseline`): such a loss only
    rescales the baseline, which a learning rate does as well. None when it does not, and for a
    network loss (it has no expression to probe)."""
    if network is not None:
        return None
    from search_engine.expr.gradient_probe import rescales_baseline
    from search_engine.expr.tree import parse

    return rescales_baseline(parse(expression), task.kind, None if weights is None else tuple(weights))


def _at_tuned_rates(task: Task, config: ExperimentConfig, losses: dict[str, LossFn], seeds, steps: int,
                    phase: Callable[[str], None] = lambda name: None,
                    on_seed: Callable[[int], None] | None = None, known: dict[str, dict] | None = None,
                    done: dict[tuple[str, float, int], float | None] | None = None) -> dict:
    """The learned loss and the baseline meta-tested each at its own rate, picked on validation data
    (`known`: rates already tuned for some of them, see `evaluate_learned_loss`'s `tuning`)."""
    pair = {name: losses[name] for name in ("learned", "baseline")}
    phase("tuning")
    seeds_tuned = list(tuning_seeds(config))
    reused = {name: t for name, t in (known or {}).items() if name in pair and t.get("seeds") == seeds_tuned}
    rest = {name: fn for name, fn in pair.items() if name not in reused}
    fresh = tune_rates(task, config, rest, steps) if rest else {}
    tuned = {name: reused[name] if name in reused else fresh[name] for name in pair}
    rates = {name: t["lr"] for name, t in tuned.items() if t["lr"] is not None}
    phase("tuned_seeds")
    runs = run_meta_test(task, config, pair, seeds=seeds, steps=steps, rates=rates, on_seed=on_seed, done=done)
    return {"learned_lr": tuned["learned"]["lr"], "baseline_lr": tuned["baseline"]["lr"],
            "tried": {name: t["tried"] for name, t in tuned.items()}, "tuning_seeds": tuned["baseline"]["seeds"],
            "by_seed": {name: t["by_seed"] for name, t in tuned.items()},
            **compare(runs["learned"], runs["baseline"], seeds=seeds, metric=task.metric_name).to_dict()}


def _learned_losses(task: Task, expression: str, weights, network: dict | None, *,
                    with_symbolic: bool = True) -> dict[str, LossFn]:
    """"learned" (and, `with_symbolic`, "symbolic": the tree at all weights 1 when it has weights) by
    the loss's form. Without `with_symbolic` the weights are the loss's own parameters (TaylorGLO)."""
    if network is not None:
        from search_engine.expr.network import NetworkLoss, make_network_loss

        if weights is not None:
            raise ValueError("a network loss has no edge weights")
        return {"learned": make_network_loss(NetworkLoss.from_dict(network), task.kind, device=task.device)}
    from search_engine.expr.tree import parse
    from search_engine.scoring.sequential import loss_for

    tree = parse(expression)
    if weights is None or not with_symbolic:
        return {"learned": loss_for(tree, task.kind, None if weights is None else tuple(weights), task.device)}
    return {"learned": loss_for(tree, task.kind, tuple(weights), task.device),
            "symbolic": loss_for(tree, task.kind, None, task.device)}
