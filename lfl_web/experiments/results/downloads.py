"""A stored learned loss as the engine's export files.

The engine is imported only when a file is built: pages that merely link to downloads never load
it. Writing a file's text needs no torch (the JSON needs nothing heavy; the torch module's and the
LaTeX document's simplified formula needs SymPy); only the TorchScript archive, compiled by torch,
loads it.
"""

from __future__ import annotations

from lfl_web.experiments.models import LearnedLoss
from search_engine.facade import catalog

#: The formats a learned loss downloads in (name, label, content_type, ...): the engine's catalogue.
DOWNLOAD_FORMATS = catalog.EXPORT_FORMATS


def spec_for(loss: LearnedLoss):
    """The engine's LearnedLossSpec for a stored learned loss (ValueError if the row is inconsistent).

    A row with `network` is a network loss (its `expression` is only the network's description);
    the engine reads the form from the spec, so every format follows from it.
    """
    from search_engine.facade import LearnedLossSpec, meta_test_summary

    experiment = loss.experiment
    kind = experiment.task_kind
    summary = None
    if isinstance(loss.meta_test, dict):
        try:
            summary = meta_test_summary(loss.meta_test, kind)
        except (TypeError, ValueError):  # an odd stored summary must not block the download
            summary = None
    return LearnedLossSpec(
        expression=loss.expression, weights=loss.weights, kind=kind, dataset=loss.dataset, model=loss.model,
        fitness=loss.validation_fitness, baseline_loss=experiment.baseline_loss or catalog.baseline_name(kind),
        baseline_fitness=loss.baseline_fitness, metric=loss.metric, meta_test=summary, network=loss.network,
        method=loss.method,
    )


def export_file(loss: LearnedLoss, fmt: str) -> tuple[bytes, str]:
    """(file contents, filename) of `loss` in format `fmt` (a key of DOWNLOAD_FORMATS)."""
    from search_engine.facade import default_filename, export

    data = export(spec_for(loss), fmt)
    return data, f"lfl_experiment{loss.experiment_id}_{default_filename(loss.rank, fmt)}"
