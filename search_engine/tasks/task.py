"""A task is a dataset + a model + a metric: what a candidate loss is learned and judged on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from search_engine import catalog
from search_engine.config import ConfigError, ExperimentConfig, data_field, dataset_spec
from search_engine.tasks import datasets
from search_engine.tasks import networks as models
from search_engine.tasks.training import metric_from_outputs, resolve_device


@dataclass(frozen=True)
class Task:
    """Loaded data (already on `device`) and the name of the model to train on it."""

    splits: datasets.Splits
    model_name: str
    device: torch.device

    @property
    def info(self) -> datasets.DatasetInfo:
        return self.splits.info

    @property
    def kind(self) -> str:
        return self.splits.info.kind

    @property
    def metric_name(self) -> str:
        return catalog.metric_name(self.kind)

    def new_model(self, seed: int) -> nn.Module:
        """A freshly initialized model on the task's device; the same seed gives the same weights."""
        return models.build_model(self.model_name, self.info, seed).to(self.device)

    def metric(self, outputs: Tensor, targets: Tensor) -> float:
        """Lower is better: error rate or MSE."""
        return metric_from_outputs(outputs, targets, self.kind)


def load_task(config: ExperimentConfig) -> Task:
    """Load the configured dataset (split by the experiment seed) onto the configured device.

    The data is read once (a user's CSV is parsed by describing it, so describing it first would
    parse it twice); a problem with it or with the model's fit is a ConfigError naming the field.
    This process's torch threads become `evaluation.threads`: every search, meta-test and transfer
    computes with the configured count, whatever the machine or the worker it runs on.
    """
    torch.set_num_threads(config.evaluation.threads)
    device = resolve_device(config.device)
    try:
        splits = datasets.load_dataset(dataset_spec(config.task), seed=config.seed)
    except datasets.DataError as exc:
        raise ConfigError({data_field(config.task): str(exc)}) from exc
    try:
        models.check_model_fits(config.task.model, splits.info)
    except (models.ModelShapeError, ValueError) as exc:
        raise ConfigError({"task.model": str(exc)}) from exc
    return Task(splits=splits.to(device), model_name=config.task.model, device=device)
