"""Transfer: meta-test a learned loss on another task (dataset + model) than the one it was learned on.

The target's configuration is the source experiment's with the task replaced: training (learning
rate, batch size, momentum), meta-test settings, seed and device stay the source's unless the
caller overrides the number of seeds or steps, so a transfer differs from the loss's own meta-test
only in the task. One setting is not the source's: a transfer also compares each loss at its own
best learning rate (`meta_test.tune_lr`), whenever its source was meta-tested, since that is the
comparison every report leads with (`verdict`). The learned loss and the target kind's baseline
train on the same paired seeds (`metatest.evaluate_learned_loss`), so the result reads exactly like
the loss's own meta-test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from search_engine import catalog
from search_engine.config import ConfigError, ExperimentConfig, load_config
from search_engine.scoring.verdict import relative_improvement  # one definition, torch-free

#: Task fields that describe where one dataset's data is; they are not carried over to another dataset.
_DATA_FIELDS = ("data_root", "data_file", "label", "kind")


def source_kind(source_config: dict) -> str:
    """The task kind ("classification" / "regression") a configuration's losses were learned for."""
    task = source_config.get("task") if isinstance(source_config.get("task"), dict) else {}
    dataset = task.get("dataset", "digits")
    return catalog.dataset_kind(dataset, task.get("kind") or "classification")


def transfer_config(
    source_config: dict | ExperimentConfig, *, dataset: str, model: str, data_root: str | None = None,
    data_file: str | None = None, label: str | None = None, kind: str | None = None,
    seeds: int | None = None, steps: int | None = None, loss_kind: str | None = None, check_data: bool = True,
    tune_lr: bool = True,
) -> ExperimentConfig:
    """The source experiment's configuration with its task replaced by `dataset` / `model`, and
    `meta_test.tune_lr` set to `tune_lr` (by default on, whatever the source's).

    Validated by `load_config`: a ConfigError names task.dataset, task.model, task.data_root,
    meta_test.seeds, ... A target whose kind differs from the loss's (`loss_kind`, by default the
    kind of the source's task) is refused with a ConfigError (a ValueError) on task.dataset: a
    classification loss reads class probabilities, a regression loss real-valued predictions.
    """
    source = source_config.to_dict() if isinstance(source_config, ExperimentConfig) else dict(source_config)
    loss_kind = loss_kind or source_kind(source)
    task = {k: v for k, v in (source.get("task") or {}).items() if k not in _DATA_FIELDS}
    task.update(dataset=dataset, model=model)
    if dataset in catalog.FILE_DATASETS:
        kind = kind or loss_kind  # user data says its kind in the configuration
    optional = {"data_root": data_root, "data_file": data_file, "label": label, "kind": kind}
    task.update({k: v for k, v in optional.items() if v is not None})
    meta_test = dict(source.get("meta_test") or {})
    meta_test.update({k: v for k, v in (("seeds", seeds), ("steps", steps)) if v is not None}, tune_lr=tune_lr)
    target = {**source, "task": task, "meta_test": meta_test}
    _check_kind(loss_kind, dataset, kind)
    return load_config(target, check_data=check_data)


def _check_kind(loss_kind: str, dataset: str, kind: str | None) -> None:
    if dataset not in catalog.datasets():
        return  # load_config names the unknown dataset
    target_kind = catalog.dataset_kind(dataset, kind or "classification")
    if target_kind != loss_kind:
        raise ConfigError({"task.dataset": (
            f"{dataset!r} is a {target_kind} dataset, but this loss was learned for {loss_kind}; "
            f"a loss transfers only to a task of the same kind")})


def transfer(spec, config: ExperimentConfig, *, on_seed: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Meta-test the learned loss `spec` (an export.spec.LearnedLossSpec) on `config`'s task.

    Returns the meta-test record (`evaluate_learned_loss`: learned vs baseline per seed, means,
    wins, paired t-test, and the same at tuned rates under "tuned_lr" where `config` asks for it)
    with "source" and "target" ({dataset, model}), "baseline_loss" and "relative_improvement"
    ((baseline mean - learned mean) / baseline mean at the search's rate, or None), and the same
    under "tuned_lr" for the comparison at tuned rates.
    """
    from search_engine.scoring.metatest import evaluate_learned_loss
    from search_engine.tasks.task import load_task

    target_kind = catalog.dataset_kind(config.task.dataset, config.task.kind or "classification")
    if spec.kind != target_kind:
        raise ValueError(f"this loss was learned for {spec.kind} and cannot be meta-tested on "
                         f"{config.task.dataset!r}, a {target_kind} dataset")
    baseline = catalog.baseline_name(target_kind)
    network = None if spec.network is None else spec.network.to_dict()
    record = evaluate_learned_loss(
        load_task(config), config, spec.expression, spec.weights, baseline,
        seeds=config.meta_test.seeds, steps=config.meta_test.steps, on_seed=on_seed, network=network,
    )
    if isinstance(record.get("tuned_lr"), dict):
        tuned = record["tuned_lr"]
        record["tuned_lr"] = {**tuned, "relative_improvement": relative_improvement(tuned)}
    return {**record, "baseline_loss": baseline, "relative_improvement": relative_improvement(record),
            "source": {"dataset": spec.dataset, "model": spec.model},
            "target": {"dataset": config.task.dataset, "model": config.task.model}}

