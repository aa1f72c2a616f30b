"""A stored learned loss as the engine's export files, and its loss-shape data for the dashboard.

The engine (and so torch) is imported only when a file or a shape is actually built: pages that
merely link to downloads never load it.
"""

from __future__ import annotations

from lfl_web.experiments.models import LearnedLoss
from search_engine import catalog

#: The formats a learned loss downloads in (name, label, content_type, ...): the engine's catalogue.
DOWNLOAD_FORMATS = catalog.EXPORT_FORMATS


def spec_for(loss: LearnedLoss):
    """The engine's LearnedLossSpec for a stored learned loss (ValueError if the row is inconsistent).

    A row with `network` is a network loss (its `expression` is only the network's description);
    the engine reads the form from the spec, so every format and the loss shape follow from it.
    """
    from search_engine.export.spec import LearnedLossSpec, meta_test_summary

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
    from search_engine.export.formats import default_filename, export

    data = export(spec_for(loss), fmt)
    return data, f"lfl_experiment{loss.experiment_id}_{default_filename(loss.rank, fmt)}"


#: The classes a loss shape is drawn for when the task's count is unknown (an experiment created
#: before it was recorded): the catalogue's image sets have as many.
DEFAULT_SHAPE_CLASSES = 10


def loss_shape_for(loss: LearnedLoss | None, n_classes: int | None = None) -> dict | None:
    """loss_shape data of a learned loss for the dashboard plot, drawn for the task's `n_classes`
    (classification); None without a loss or if it cannot be built."""
    if loss is None:
        return None
    from search_engine.export.loss_shape import loss_shape

    classes = n_classes if n_classes and n_classes >= 2 else DEFAULT_SHAPE_CLASSES
    try:
        return loss_shape(spec_for(loss), n_classes=classes, grid=41)
    except (ValueError, TypeError):
        return None
