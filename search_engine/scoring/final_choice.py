"""The final choice: which of the search's best losses becomes the experiment's learned loss.

The hall of fame is ranked by fitness, one training run at the search's rate on the validation
split, which a few hundred samples make noisy and which rewards losses that suit that one rate.
Before the meta-test, the few best distinct entries and the baseline are each trained at their
own best learning rate (`tuned_lr.tune_rates`: the tuning seeds, the meta-test's steps, the
validation split) and the entry with the lowest validation metric there is chosen. A rate's
metric is the worse of its tuning seeds' (`tuned_lr.rate_score`), so a loss that trains well at a
rate on one seed only is not chosen for it. The test split is never read: it stays for the meta-test.

The record says, for every candidate, its hall-of-fame rank, its best rate and validation metric,
and which was chosen, so a page can show the comparison.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

from search_engine.config import ExperimentConfig
from search_engine.expr.tree import KNOWN_LOSSES, parse
from search_engine.scoring import protocol
from search_engine.scoring.run_counts import FINALISTS
from search_engine.scoring.sequential import loss_for
from search_engine.scoring.tuned_lr import tune_rates
from search_engine.tasks.task import Task


def choose_final(task: Task, config: ExperimentConfig, entries: Sequence[Any], baseline: str,
                 finalists: int = FINALISTS, steps: int | None = None) -> dict[str, Any]:
    """Compare the first `finalists` expression entries of `entries` (hall-of-fame entries or their
    JSON dicts, best first) and the baseline at their own best rates on validation data.

    Returns {"chosen": rank of the winner (1-based, in `entries`), "steps", "candidates": [{"rank",
    "expression", "lr", "validation", "tried", "seeds", "by_seed"}], "baseline": {the same but "rank" and
    "expression"}} ("seeds", "by_seed": the tuning seeds and each rate's metric on each). A network
    loss (ML3) has no expression to rebuild here: with one, the first entry is chosen untested.
    """
    steps = config.meta_test.steps if steps is None else steps
    ranked = [(rank, _fields(e)) for rank, e in enumerate(entries, start=1)][:finalists]
    if not ranked or any(fields["network"] is not None for _, fields in ranked):
        return {"chosen": 1 if ranked else None, "steps": steps, "candidates": [], "baseline": None}
    probe = protocol.GradientProbe.for_task(task, config) if protocol.is_tuned(config) else None
    losses = {str(rank): _loss(task, fields, probe) for rank, fields in ranked}
    losses["baseline"] = loss_for(KNOWN_LOSSES[baseline], task.kind, None, task.device)
    tuned = tune_rates(task, config, losses, steps)
    candidates = [
        {"rank": rank, "expression": fields["expression"], **_best(tuned[str(rank)])} for rank, fields in ranked
    ]
    scored = [c for c in candidates if c["validation"] is not None]
    chosen = min(scored, key=lambda c: (c["validation"], c["rank"]))["rank"] if scored else ranked[0][0]
    return {"chosen": chosen, "steps": steps, "candidates": candidates, "baseline": _best(tuned["baseline"])}


def _fields(entry: Any) -> dict[str, Any]:
    """expression / weights / network of a hall-of-fame entry or its JSON dict."""
    get = entry.get if isinstance(entry, dict) else lambda name, default=None: getattr(entry, name, default)
    return {"expression": get("expression"), "weights": get("weights"), "network": get("network")}


def _loss(task: Task, fields: dict[str, Any], probe: protocol.GradientProbe | None):
    """The entry's loss as the search trained it: its edge weights, and under the tuned protocol
    scaled to the baseline's gradient size."""
    weights = fields["weights"]
    base = loss_for(parse(fields["expression"]), task.kind, None if weights is None else tuple(weights), task.device)
    return base if probe is None else protocol.scaled(base, probe.scale(base))


def _best(tuned: dict[str, Any]) -> dict[str, Any]:
    """{"lr", "validation" (the score at that rate, None if every rate diverged), "tried", "seeds",
    "by_seed"}."""
    values = [v for lr, v in tuned["tried"] if lr == tuned["lr"] and v is not None and math.isfinite(v)]
    return {"lr": tuned["lr"], "validation": values[0] if values else None, "tried": tuned["tried"],
            "seeds": tuned["seeds"], "by_seed": tuned["by_seed"]}


def meta_test_final(task: Task, config: ExperimentConfig, entries: Sequence[Any], baseline: str, *,
                    finalists: int = FINALISTS, on_seed=None, tune_lr: bool | None = None,
                    search_rate: float | None = None, on_phase=None) -> dict[str, Any]:
    """Choose among the best `entries` on validation (`choose_final`), then meta-test the chosen one
    on the test split (`metatest.evaluate_learned_loss`). The record is the meta-test's, with
    "rank" (the chosen entry's hall-of-fame rank) and "final_choice" (the comparison) added.
    Without tuned rates (`tune_lr`, default `meta_test.tune_lr`: the paper's protocol alone) the
    hall of fame's best is the learned loss, as the paper takes it, and "final_choice" is None.
    `on_phase(name)`: "final_choice" as the choice begins, then the meta-test's phases (`evaluate_learned_loss`)."""
    from search_engine.scoring.metatest import evaluate_learned_loss

    if not entries:
        raise LookupError("the search kept no learned loss to meta-test")
    tuned = config.meta_test.tune_lr if tune_lr is None else tune_lr
    if tuned and on_phase:
        on_phase("final_choice")
    choice = choose_final(task, config, entries, baseline, finalists) if tuned else None
    rank = choice["chosen"] if choice else 1
    fields = _fields(entries[rank - 1])
    record = evaluate_learned_loss(task, config, fields["expression"], fields["weights"], baseline,
                                   on_seed=on_seed, network=fields["network"], tune_lr=tuned,
                                   search_rate=search_rate, on_phase=on_phase,
                                   tuning=tuning_of(choice, config.meta_test.steps))
    return {**record, "rank": rank, "final_choice": choice}


def tuning_of(choice: dict[str, Any] | None, steps: int) -> dict[str, dict] | None:
    """The chosen loss's and the baseline's rate tuning from a `choose_final` record, in
    `tuned_lr.tune_rates`'s form: a meta-test of `steps` tunes the same losses on the same seeds, so
    it takes these instead of training every rate again. None without a comparison or when the
    choice trained another number of steps."""
    if not choice or not choice["candidates"] or choice["baseline"] is None or choice["steps"] != steps:
        return None
    chosen = next(c for c in choice["candidates"] if c["rank"] == choice["chosen"])
    keys = ("lr", "tried", "seeds", "by_seed")
    return copy.deepcopy({"learned": {k: chosen[k] for k in keys},
                          "baseline": {k: choice["baseline"][k] for k in keys}})
