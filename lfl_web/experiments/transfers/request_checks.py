"""A transfer request checked before anything is stored: the target task like a new experiment's
configuration (the engine's `transfer_config`, the server's data folders, its training ceiling).

`services.create_transfer` stores a request that passes; the worker checks the stored row again
(`transfers.worker`) before it trains anything.
"""

from __future__ import annotations

from django.conf import settings

from lfl_web.experiments.models import LearnedLoss
from lfl_web.experiments.submit.validation import server_paths_outside_data_dirs
from search_engine.facade import TUNING_RUNS_AT_MOST, ConfigError, catalog

#: Configuration field -> the request field a transfer reports it under.
REQUEST_FIELDS = {"task.dataset": "dataset", "task.model": "model", "task.data_root": "data_root",
                  "meta_test.seeds": "seeds", "meta_test.steps": "steps"}


class InvalidTransfer(Exception):
    """A transfer request that was not stored; `errors` maps each bad field (dataset, model, ...) to why."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


class TransferBusy(Exception):
    """The loss is already queued or running on that task; it is not asked twice."""


def target_datasets() -> tuple[str, ...]:
    """The datasets a transfer may target from the web: the server's own, its plugins' included (an upload
    belongs to one experiment)."""
    return tuple(name for name in catalog.dataset_names() if name not in catalog.FILE_DATASETS)


def transfer_settings(*, learned_loss: LearnedLoss, dataset, model, data_root: str = "", seeds=None, steps=None):
    """The target configuration (an ExperimentConfig), or InvalidTransfer naming each bad request field."""
    from search_engine.facade import transfer_config

    if dataset in catalog.FILE_DATASETS:
        raise InvalidTransfer({"dataset": f"choose one of {', '.join(target_datasets())}; an uploaded file "
                                          "belongs to the experiment that uploaded it"})
    outside = server_paths_outside_data_dirs({"task": {"data_root": data_root}})
    if outside:
        raise InvalidTransfer({"data_root": outside["task.data_root"]})
    try:
        config = transfer_config(learned_loss.experiment.config, dataset=dataset, model=model,
                                 data_root=data_root or None, seeds=seeds, steps=steps,
                                 loss_kind=learned_loss.experiment.task_kind)
    except ConfigError as exc:
        raise InvalidTransfer({REQUEST_FIELDS.get(k, k): v for k, v in exc.errors.items()}) from None
    _check_ceiling(config, learned_loss)
    return config


def _check_ceiling(config, learned_loss: LearnedLoss) -> None:
    """The training steps a transfer asks for (learned, baseline and, with weights, symbolic; with
    tuning, every rate tried on every tuning seed and the seeds again at the best, as
    `limits.work_estimate` counts them) within settings.LFL_MAX_TRAINING_STEPS."""
    runs = 3 if learned_loss.weights else 2
    total = config.meta_test.seeds * config.meta_test.steps * runs
    if config.meta_test.tune_lr:
        total += 2 * (TUNING_RUNS_AT_MOST + config.meta_test.seeds) * config.meta_test.steps
    ceiling = settings.LFL_MAX_TRAINING_STEPS
    if ceiling and total > ceiling:
        raise InvalidTransfer({"steps": f"asks for {total:,} training steps, more than the {ceiling:,} this "
                                        "server allows (LFL_MAX_TRAINING_STEPS); lower seeds or steps"})
