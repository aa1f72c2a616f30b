"""What a program that drives the engine uses of it: the one module the web app imports.

Names load on first use, so importing this module (or a page that imports a torch-free name) does
not load torch or SymPy: `catalog`, `config`, `limits`, `verdict` and the expression tree's text
functions are torch-free; the rest loads the numeric stack when used, in a worker.

Grouped by use:
    facts and configuration   catalog (and its METHODS, EXPORT_FORMATS, MODEL_NAMES), load_config, ConfigError, ExperimentConfig, MetaTestConfig,
                              EVALUATION_STRATEGIES, check_task, dataset_spec, as_stored, config_field,
                              work_estimate, step_labels, generation_count, network_weight_count,
                              TUNING_RUNS_AT_MOST, describe_dataset, DataError
    running a search          method_named, search_started, finished_event, advance, Known, FileStorage, interrupt,
                              load_task, preload_numeric_stack
    after a search            meta_test_final, search_rate_of, transfer, transfer_config, verdict,
                              Verdict, relative_improvement, leading_comparison
    learned losses            parse, prefix_size, NetworkLoss, LearnedLossSpec, meta_test_summary,
                              check_weights, loss_shape, export, default_filename
"""

from __future__ import annotations

from importlib import import_module

#: Modules the facade hands out whole.
_MODULES = {"catalog": "search_engine.catalog", "interrupt": "search_engine.runtime.interrupt"}

#: name -> the module that defines it.
_NAMES = {
    "METHODS": "search_engine.catalog", "EXPORT_FORMATS": "search_engine.catalog", "MODEL_NAMES": "search_engine.catalog",
    "load_config": "search_engine.config", "ConfigError": "search_engine.config",
    "ExperimentConfig": "search_engine.config", "MetaTestConfig": "search_engine.config",
    "EVALUATION_STRATEGIES": "search_engine.config", "check_task": "search_engine.config",
    "dataset_spec": "search_engine.config",
    "as_stored": "search_engine.stored_config",
    "config_field": "search_engine.config",
    "work_estimate": "search_engine.limits", "step_labels": "search_engine.limits",
    "TUNING_RUNS_AT_MOST": "search_engine.limits",
    "generation_count": "search_engine.study.method", "network_weight_count": "search_engine.study.method",
    "describe_dataset": "search_engine.tasks.describe", "DataError": "search_engine.tasks.describe",
    "method_named": "search_engine.study.method",
    "search_started": "search_engine.study.driver", "finished_event": "search_engine.study.driver",
    "FileStorage": "search_engine.study.storage",
    "advance": "search_engine.study.advance", "Known": "search_engine.study.advance",
    "load_task": "search_engine.tasks.task",
    "meta_test_final": "search_engine.scoring.final_choice",
    "search_rate_of": "search_engine.scoring.protocol",
    "transfer": "search_engine.scoring.transfer", "transfer_config": "search_engine.scoring.transfer",
    "verdict": "search_engine.scoring.verdict", "Verdict": "search_engine.scoring.verdict",
    "relative_improvement": "search_engine.scoring.verdict", "leading_comparison": "search_engine.scoring.verdict",
    "parse": "search_engine.expr.tree", "prefix_size": "search_engine.expr.tree",
    "NetworkLoss": "search_engine.expr.network",
    "LearnedLossSpec": "search_engine.export.spec", "meta_test_summary": "search_engine.export.spec",
    "check_weights": "search_engine.export.spec",
    "loss_shape": "search_engine.export.loss_shape",
    "export": "search_engine.export.formats", "default_filename": "search_engine.export.formats",
}

__all__ = sorted([*_MODULES, *_NAMES, "preload_numeric_stack"])


def __getattr__(name: str):
    if name in _MODULES:
        return import_module(_MODULES[name])
    if name in _NAMES:
        return getattr(import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'search_engine.facade' has no attribute {name!r}")


def preload_numeric_stack() -> None:
    """Import what every search needs (torch, SymPy, the datasets, networks, evaluators and operators),
    touching no device: a process that forks workers calls it once, so its children have nothing to load."""
    for module in ("search_engine.evolution.steps", "search_engine.scoring.plan", "search_engine.tasks.task",
                   "search_engine.study.driver"):
        import_module(module)
