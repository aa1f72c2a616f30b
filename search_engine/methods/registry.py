"""Method name -> strategy, and `run_method`, the one entry point that runs any method.

A strategy is an object with ``run(config, on_event, should_stop, *, checkpoint_path, resume)``
returning an `evolution.loop.SearchResult`, the contract of `run_search`: events through
`on_event`, a cooperative stop through `should_stop`, a checkpoint after every generation (or
block of meta steps) and resume from it, every random choice from `config.seed`. Strategies are
imported when first used, so naming a method does not load torch.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from search_engine import catalog

#: method name -> "module:attribute" of its strategy object (one per catalogue method).
STRATEGIES: dict[str, str] = {
    "evomal": "search_engine.methods.evolutionary:EVOMAL",
    "gplfl": "search_engine.methods.evolutionary:GPLFL",
    "ml3": "search_engine.methods.ml3:ML3",
    "taylorglo": "search_engine.methods.taylorglo:TAYLORGLO",
}
assert set(STRATEGIES) == set(catalog.METHODS), "every catalogue method has one strategy"


def strategy(name: str):
    """The strategy object of method `name` (KeyError naming the known ones otherwise)."""
    if name not in STRATEGIES:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(STRATEGIES)}")
    module, attribute = STRATEGIES[name].split(":")
    return getattr(import_module(module), attribute)


def run_method(config, on_event=None, should_stop=None, *, checkpoint_path: str | Path | None = None,
               resume: bool = False):
    """Run `config.method` on `config` (an ExperimentConfig or anything `load_config` reads)."""
    from search_engine.config import ExperimentConfig, load_config

    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    return strategy(config.method).run(
        config, on_event, should_stop, checkpoint_path=checkpoint_path, resume=resume)
