"""A learned loss's shape (its value along simple slices, `search_engine.export.loss_shape`), computed
where the loss is stored and kept on its row.

The worker that keeps a search's learned losses computes their shapes (it has torch loaded anyway);
the dashboard only reads them, so a page never loads torch. Rows stored before shapes were kept got
theirs from a data migration. The engine is imported only when a shape is computed.
"""

from __future__ import annotations

#: The classes a shape is drawn for when the task's count is unknown (an experiment created before it
#: was recorded): the catalogue's image sets have as many.
DEFAULT_SHAPE_CLASSES = 10
#: Points along each slice: enough for a smooth curve, a few kB of JSON per loss.
SHAPE_POINTS = 41


def shape_data(*, expression: str, weights: list | None, network: dict | None, kind: str,
               n_classes: int | None) -> dict | None:
    """The loss-shape data of a learned loss (an expression with optional edge weights, or a network
    loss's JSON form) for a task of `kind` with `n_classes` classes; None if the loss cannot be read."""
    from search_engine.facade import NetworkLoss, check_weights, loss_shape, parse

    classes = n_classes if n_classes and n_classes >= 2 else DEFAULT_SHAPE_CLASSES
    try:
        if network is not None:
            return loss_shape(NetworkLoss.from_dict(network), n_classes=classes, grid=SHAPE_POINTS, kind=kind)
        tree = parse(expression)
        return loss_shape(tree, check_weights(weights, tree), n_classes=classes, grid=SHAPE_POINTS, kind=kind)
    except (ValueError, TypeError):  # a row the engine cannot read (the download says why): no shape
        return None
