"""A search's state as a JSON checkpoint file: the command line's state store.

Written atomically after every generation (a reader never sees half a file) and read back to
resume: the method's `state_to_dict` / `state_from_dict`, then the checks that the checkpoint
belongs to the configuration resuming it. The web keeps the same JSON in its database instead.
"""

from __future__ import annotations

from pathlib import Path

from search_engine.config import ConfigError, ExperimentConfig, load_config
from search_engine.evolution.checkpoint import CheckpointError, read_json, write_json_atomic
from search_engine.stored_config import adopt_stored, as_stored
from search_engine.study.result import check_same_experiment


class FileStorage:
    """The checkpoint of one search at `path`, read and written through `method`."""

    def __init__(self, path: str | Path, method):
        self.path, self.method = Path(path), method

    def save(self, state) -> None:
        write_json_atomic(self.path, self.method.state_to_dict(state))

    def resume(self, config: ExperimentConfig):
        """(state, config) to continue: None and `config` when there is no checkpoint; else the
        checkpoint's state (CheckpointError naming why it cannot continue under `config`) and `config`
        with the fields the checkpoint predates as it ran."""
        if not self.path.exists():
            return None, config
        state = self.method.state_from_dict(read_json(self.path))
        return state, resumed(self.method, state, config, where=f"checkpoint {self.path}")


def resumed(method, state, config: ExperimentConfig, where: str = "checkpoint") -> ExperimentConfig:
    """`config` for continuing `state` (checked to be the same experiment; the state takes it)."""
    config = adopt_stored(config, state.config)  # fields the checkpoint predates keep how it ran
    try:  # read the saved configuration as today's code does: sections added since take their defaults
        saved = load_config(as_stored(state.config), check_data=False).to_dict()
    except ConfigError as exc:
        raise CheckpointError(f"{where} holds an invalid configuration: {exc}") from exc
    check_same_experiment(saved, config.to_dict(), extendable=method.extendable)
    method.check_resumable(state, config)
    state.config = config.to_dict()
    return config
