"""The installed plugins tried for real (`python -m search_engine plugins --check`): each plugin's data set
loaded and checked against its facts, each plugin's model built for every catalogue data set its facts
say it fits and run on a batch of zeros. Configuration checks trust the facts without torch; this is
where a server's operator sees that the code behind them keeps their promises.
"""

from __future__ import annotations

from search_engine import catalog
from search_engine.tasks import networks
from search_engine.tasks.datasets.core import DataError, DatasetInfo, DatasetSpec
from search_engine.tasks.datasets.plugin_data import load_plugin_source


def check_installed() -> list[tuple[bool, str]]:
    """(passed, what was tried and what came of it) for every plugin data set and every pairing of a
    plugin model with a data set whose facts it accepts (file data sets have no facts to pair with)."""
    found = catalog.installed_plugins()
    results = [_check_dataset(name) for name in found.datasets]
    for model in found.models:
        fitting = [info for info in map(_info, catalog.dataset_names()) if info is not None
                   and catalog.model_fit_problem(model, info.name, info.kind, info.input_shape) is None]
        if not fitting:
            results.append((False, f"model {model}: its facts accept none of the catalogue's data sets"))
        results += [_check_model(model, info) for info in fitting]
    return results


def _info(dataset: str) -> DatasetInfo | None:
    facts = catalog.data_facts(dataset)
    if facts is None:
        return None
    return DatasetInfo(dataset, catalog.dataset_kind(dataset), facts.input_shape, facts.n_outputs)


def _check_dataset(name: str) -> tuple[bool, str]:
    try:
        source = load_plugin_source(DatasetSpec(name))
    except DataError as exc:
        return False, f"data set {name}: {exc}"
    return True, f"data set {name}: {len(source.y)} samples of shape {tuple(source.x.shape[1:])}, as its facts say"


def _check_model(model: str, info: DatasetInfo) -> tuple[bool, str]:
    try:
        networks.check_model_fits(model, info)
    except ValueError as exc:
        return False, f"model {model} on {info.name}: {exc}"
    return True, f"model {model} on {info.name}: built, and a batch gives {info.n_outputs} outputs per sample"
