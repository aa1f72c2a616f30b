"""What the pages say about an experiment's data: the name it is listed under, its kind of task and
its class count.

A data set of the catalogue is named as the catalogue names it ("digits"); a file, uploaded or
already on the server, by its file name ("iris.csv"), so that two tables are two data sets on the
leaderboard and in its dataset filter, never one "csv". The class count is how many classes a
classification task's model tells apart: the catalogue's for its own data sets, the file's for a
user's (read once, when the experiment is created: numpy only, no torch).
"""

from __future__ import annotations

from pathlib import PurePath

from search_engine.facade import catalog

#: The longest name a data set is listed under (the length of LearnedLoss.dataset).
MAX_NAME_LENGTH = 64


def data_name(file_name: str) -> str:
    """A file's name as the pages list its data: its last path part (an upload's name may hold
    folders), printable characters only, at most MAX_NAME_LENGTH characters with its extension kept."""
    name = "".join(c for c in PurePath(str(file_name).replace("\\", "/")).name if c.isprintable()).strip()
    if len(name) <= MAX_NAME_LENGTH:
        return name
    suffix = PurePath(name).suffix[:16]
    return name[:MAX_NAME_LENGTH - len(suffix) - 1] + "…" + suffix


def file_data_name(config: dict) -> str:
    """The name of the file a stored configuration reads its data from; "" for a catalogue data set."""
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(task, dict) or task.get("dataset") not in catalog.FILE_DATASETS or not task.get("data_file"):
        return ""
    return data_name(task["data_file"])


def class_count(config: dict) -> int | None:
    """How many classes the task of a stored (validated) configuration has; None for regression, or
    when its data cannot be read (the worker will say why)."""
    task = config.get("task", {})
    dataset = task.get("dataset", "")
    if catalog.dataset_kind(dataset, task.get("kind") or "classification") != "classification":
        return None
    facts = catalog.data_facts(dataset)
    if facts is not None:
        return facts.n_outputs
    if dataset not in catalog.FILE_DATASETS:
        return None
    return _file_class_count(config)


def task_kind(config: dict, baseline_loss: str) -> str:
    """"classification" or "regression" for an experiment's stored `config`: from the baseline its
    search used (once known), else from the configuration."""
    if baseline_loss in catalog.BASELINES:
        return catalog.kind_of_baseline(baseline_loss)
    task = config.get("task", {})
    configured = task.get("kind") if task.get("kind") in catalog.KINDS else "classification"
    return catalog.dataset_kind(task.get("dataset", ""), configured)


def stored_class_count(config: dict, baseline_loss: str, n_classes: int | None) -> int | None:
    """Classes of an experiment's classification task: `n_classes`, counted when it was created, else
    the catalogue's count for its data set; None for regression or when unknown."""
    if n_classes:
        return n_classes
    facts = catalog.data_facts(config.get("task", {}).get("dataset", ""))
    return facts.n_outputs if facts is not None and task_kind(config, baseline_loss) == "classification" else None


def _file_class_count(config: dict) -> int | None:
    from search_engine.facade import ConfigError, DataError, dataset_spec, describe_dataset, load_config

    try:
        info = describe_dataset(dataset_spec(load_config(config, check_data=False).task))
    except (ConfigError, DataError, OSError):
        return None
    return info.n_outputs if info.kind == "classification" else None
