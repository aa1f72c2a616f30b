"""lfl search engine: evolutionary search for symbolic loss functions (EvoMAL), pure Python + PyTorch.

Importing the package is cheap; the numeric stack (torch, sympy) loads when a name that needs it
is first used, so a web page can validate a configuration without loading torch.
"""

from importlib import import_module

_EXPORTS = {
    "run_search": "search_engine.study.driver",
    "SearchResult": "search_engine.study.result",
    "ExperimentConfig": "search_engine.config",
    "ConfigError": "search_engine.config",
    "load_config": "search_engine.config",
    "parse": "search_engine.expr.tree",
    "Node": "search_engine.expr.tree",
    "make_loss": "search_engine.expr.losses",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'search_engine' has no attribute {name!r}")
