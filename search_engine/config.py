"""Experiment configuration: frozen dataclasses with EvoMAL's defaults, validated once at the boundary.

`load_config(dict_or_path)` is the single entry point for untrusted input (JSON files, web forms,
API calls). It rejects unknown fields, wrong types and out-of-range values with a `ConfigError`
that lists every problem with its dotted field name, e.g. ``search.crossover_rate: must be in
[0, 1], got 1.5``. This module imports neither torch nor sympy, so a web page can validate a
configuration without loading the numeric stack; the dataset/model checks are imported lazily.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_engine import catalog, limits
from search_engine.methods.settings import ML3Settings, TaylorGLOSettings
from search_engine.methods.settings import check_ranges as check_method_ranges


class ConfigError(ValueError):
    """One or more invalid configuration fields; `errors` maps dotted field names to messages."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass(frozen=True)
class TaskConfig:
    """What the losses are learned on: a dataset and a model."""

    dataset: str = "digits"  # a registered dataset name (see search_engine.tasks.datasets)
    model: str = "mlp"  # a registered model name (see search_engine.tasks.networks)
    data_root: str | None = None  # folder holding torchvision datasets (mnist, cifar10, ...)
    data_file: str | None = None  # user data: a .csv or .npz file
    label: str | None = None  # csv label column / npz label key
    kind: str | None = None  # user data: "classification" or "regression"
    val_fraction: float = 0.2  # share of the training pool held out for fitness
    test_fraction: float = 0.2  # share held out for meta-testing (sklearn/user data only)
    max_train: int | None = None  # subsample the training split, for fast searches


@dataclass(frozen=True)
class SearchSettings:
    """The genetic-programming loop. Defaults follow EvoMAL (Raymond et al., TPAMI 2023)."""

    population_size: int = 25
    generations: int = 50
    crossover_rate: float = 0.7
    mutation_rate: float = 0.25
    tournament_size: int = 4
    elitism_rate: float = 0.05  # EvoMAL configures 5% but never applies it; we apply it
    init_min_height: int = 2  # ramped half-and-half initial heights
    init_max_height: int = 4
    max_height: int = 10  # static limit, checked after every operator
    mutation_min_height: int = 0  # height of the random subtree a mutation inserts
    mutation_max_height: int = 2
    seed_known_losses: bool = True  # start from cross-entropy / squared error: never worse than baseline
    hall_of_fame_size: int = 10


@dataclass(frozen=True)
class TrainingConfig:
    """How a candidate loss is scored: train the task's model from a fixed seed with SGD."""

    steps: int = 500
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    # "tuned": the search trains at the baseline's best rate (picked on validation from a grid around
    # `lr`) and every candidate loss is scaled to the baseline's gradient size, so no candidate can win
    # by being a rescaled baseline (scoring.protocol). "fixed": every loss as it is, at `lr` (the paper).
    lr_protocol: str = "tuned"


@dataclass(frozen=True)
class RejectionConfig:
    """Cheap screen run before training: optimize a fixed subset's outputs directly under the loss."""

    enabled: bool = True
    steps: int = 100  # Adam steps on the outputs, lr = training.lr
    samples: int = 100  # size of the fixed training subset


LOCAL_SEARCH_MODES = ("off", "all", "top_k")
LR_PROTOCOLS = ("tuned", "fixed")


@dataclass(frozen=True)
class LocalSearchConfig:
    """Gradient refinement of a symbolic loss's edge weights through unrolled training steps."""

    mode: str = "all"  # "off" (pure GP, the GP-LFL baseline), "all" accepted candidates (EvoMAL), "top_k"
    top_k: int = 5  # with mode "top_k": how many of each generation's best are refined
    meta_steps: int = 250
    inner_steps: int = 1  # K differentiable SGD steps per meta step
    meta_lr: float = 1e-3  # Adam on the loss weights; the inner lr is training.lr
    batch_size: int = 128


@dataclass(frozen=True)
class MetaTestConfig:
    """Meta-testing: train from scratch with the learned loss and with the baseline, several seeds."""

    steps: int = 2000
    seeds: int = 5
    lr_milestones: tuple[int, ...] = ()  # steps at which the learning rate is multiplied by lr_gamma
    lr_gamma: float = 0.1  # (the reference's CIFAR schedule: 150,000 steps, x0.1 at 100,000 and 135,000)
    # Also compare each loss at its own best learning rate (scoring.tuned_lr); reports lead with that
    # comparison (scoring.verdict). On by default: at the search's rate alone, a loss that only rescales
    # the baseline's gradient looks better. Off: the paper's protocol alone, and a faster meta-test.
    tune_lr: bool = True


EVALUATION_STRATEGIES = ("auto", "measure", "sequential", "batched")


@dataclass(frozen=True)
class EvaluationConfig:
    """How candidates are scored: one after another, or a population of models as one program."""

    strategy: str = "auto"  # "auto" (fixed rule: scoring.plan), "measure" (time it), "sequential", "batched"
    max_population_chunk: int = 25  # most candidates trained together in one program
    # torch's threads for the search's math on a CPU. A thread count changes float rounding (a matrix
    # product splits its sums by thread), so it is part of the configuration, not of the machine or of
    # how many workers share it: every process that evaluates for the search uses this many.
    threads: int = 1


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment. `seed` drives every random choice of the search."""

    method: str = "evomal"  # a catalogue method: "evomal", "gplfl", "ml3", "taylorglo"
    task: TaskConfig = field(default_factory=TaskConfig)
    search: SearchSettings = field(default_factory=SearchSettings)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    local_search: LocalSearchConfig = field(default_factory=LocalSearchConfig)
    meta_test: MetaTestConfig = field(default_factory=MetaTestConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    ml3: ML3Settings = field(default_factory=ML3Settings)  # used when method is "ml3"
    taylorglo: TaylorGLOSettings = field(default_factory=TaylorGLOSettings)  # when method is "taylorglo"
    seed: int = 0
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:N"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary (the stored form: lists, not tuples, as JSON gives them back)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# ---------------------------------------------------------------- parsing


def _type_error(expected: str, value: Any) -> str:
    return f"must be {expected}, got {value!r}"


_LARGEST_FLOAT = 1.7976931348623157e308
#: torch keeps a device index in an int8, so "cuda:128" would silently become cuda:-128.
_MAX_CUDA_INDEX = 127


def _is_cuda_index(device: str) -> bool:
    """'cuda:N' with N written as torch reads it: ASCII digits, no leading zero, at most 127."""
    index = device.removeprefix("cuda:")
    return (device.startswith("cuda:") and index.isascii() and index.isdigit()
            and (index == "0" or not index.startswith("0")) and int(index) <= _MAX_CUDA_INDEX)


def _coerce(tp: Any, value: Any) -> tuple[Any, str | None]:
    """Check one leaf value against its annotation; return (value, error message or None)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None, None
        return _coerce(args[0], value)
    if tp is bool:
        return (value, None) if isinstance(value, bool) else (value, _type_error("true or false", value))
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return (value, None) if ok else (value, _type_error("an integer", value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, _type_error("a number", value)
        # abs(int) > 1.8e308 overflows math.isfinite (OverflowError); such an int is not finite as a float.
        if (isinstance(value, int) and abs(value) > _LARGEST_FLOAT) or not math.isfinite(value):
            return value, _type_error("a finite number", value)
        return float(value), None
    if tp is str:
        return (value, None) if isinstance(value, str) else (value, _type_error("a string", value))
    if typing.get_origin(tp) is tuple:  # tuple[int, ...]: a JSON list of integers
        if not isinstance(value, (list, tuple)):
            return value, _type_error("a list of integers", value)
        items = [_coerce(int, v) for v in value]
        bad = next((problem for _, problem in items if problem), None)
        return (tuple(value), None) if bad is None else (value, "every item " + bad)
    raise TypeError(f"unsupported config annotation {tp!r}")


def _build(cls: type, data: Any, prefix: str, errors: dict[str, str]) -> Any:
    """Build dataclass `cls` from `data`, recording errors under dotted names."""
    if not isinstance(data, dict):
        errors[prefix.rstrip(".") or "config"] = _type_error("an object", data)
        return cls()
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(names)})"
            errors[prefix + (key if isinstance(key, str) and key else repr(key))] = "unknown field" + hint
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name], f"{prefix}{name}.", errors)
            continue
        value, problem = _coerce(tp, data[name])
        if problem:
            errors[prefix + name] = problem
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _check_ranges(c: ExperimentConfig) -> dict[str, str]:
    """Semantic checks that need no data: sizes, rates, heights."""
    e: dict[str, str] = {}

    def need(ok: bool, name: str, message: str) -> None:
        if not ok and name not in e:
            e[name] = message

    need(c.method in catalog.METHODS, "method",
         f"must be one of {', '.join(catalog.METHODS)}, got {c.method!r}")
    check_method_ranges(c, need)
    for name, message in limits.float_range_errors(c).items():  # rates, fractions, learning rates: each bounded
        need(False, name, message)
    s, t, r, m = c.search, c.training, c.rejection, c.meta_test
    need(s.population_size >= 2, "search.population_size", f"must be at least 2, got {s.population_size}")
    need(s.generations >= 1, "search.generations", f"must be at least 1, got {s.generations}")
    need(
        s.crossover_rate + s.mutation_rate <= 1.0 + 1e-12, "search.mutation_rate",
        f"crossover_rate + mutation_rate must be at most 1, got {s.crossover_rate + s.mutation_rate:g}",
    )
    need(s.tournament_size >= 1, "search.tournament_size", f"must be at least 1, got {s.tournament_size}")
    need(s.init_min_height >= 1, "search.init_min_height", f"must be at least 1, got {s.init_min_height}")
    need(
        s.init_max_height >= s.init_min_height, "search.init_max_height",
        f"must be at least init_min_height ({s.init_min_height}), got {s.init_max_height}",
    )
    need(
        s.max_height >= s.init_max_height, "search.max_height",
        f"must be at least init_max_height ({s.init_max_height}), got {s.max_height}",
    )
    need(s.max_height <= 17, "search.max_height", f"must be at most 17, got {s.max_height}")
    need(s.mutation_min_height >= 0, "search.mutation_min_height", f"must be >= 0, got {s.mutation_min_height}")
    need(
        s.mutation_max_height >= s.mutation_min_height, "search.mutation_max_height",
        f"must be at least mutation_min_height ({s.mutation_min_height}), got {s.mutation_max_height}",
    )
    need(s.hall_of_fame_size >= 1, "search.hall_of_fame_size", f"must be at least 1, got {s.hall_of_fame_size}")
    need(t.steps >= 1, "training.steps", f"must be at least 1, got {t.steps}")
    need(t.batch_size >= 1, "training.batch_size", f"must be at least 1, got {t.batch_size}")
    need(not t.nesterov or t.momentum > 0, "training.nesterov", "Nesterov needs momentum > 0")
    need(t.lr_protocol in LR_PROTOCOLS, "training.lr_protocol",
         f"must be one of {', '.join(LR_PROTOCOLS)}, got {t.lr_protocol!r}")
    need(r.steps >= 1, "rejection.steps", f"must be at least 1, got {r.steps}")
    need(r.samples >= 2, "rejection.samples", f"must be at least 2, got {r.samples}")
    ls = c.local_search
    need(ls.mode in LOCAL_SEARCH_MODES, "local_search.mode",
         f"must be one of {', '.join(LOCAL_SEARCH_MODES)}, got {ls.mode!r}")
    need(ls.top_k >= 1, "local_search.top_k", f"must be at least 1, got {ls.top_k}")
    need(ls.meta_steps >= 1, "local_search.meta_steps", f"must be at least 1, got {ls.meta_steps}")
    need(ls.inner_steps >= 1, "local_search.inner_steps", f"must be at least 1, got {ls.inner_steps}")
    need(ls.batch_size >= 1, "local_search.batch_size", f"must be at least 1, got {ls.batch_size}")
    ev = c.evaluation
    need(ev.strategy in EVALUATION_STRATEGIES, "evaluation.strategy",
         f"must be one of {', '.join(EVALUATION_STRATEGIES)}, got {ev.strategy!r}")
    need(ev.max_population_chunk >= 1, "evaluation.max_population_chunk",
         f"must be at least 1, got {ev.max_population_chunk}")
    need(ev.threads >= 1, "evaluation.threads", f"must be at least 1, got {ev.threads}")
    need(m.steps >= 1, "meta_test.steps", f"must be at least 1, got {m.steps}")
    need(m.seeds >= 1, "meta_test.seeds", f"must be at least 1, got {m.seeds}")
    ms = m.lr_milestones
    need(all(a < b for a, b in zip((0, *ms), ms)), "meta_test.lr_milestones",
         f"must be increasing positive step numbers, got {list(ms)}")
    tk = c.task
    need(tk.val_fraction + tk.test_fraction < 1.0, "task.test_fraction", "val_fraction + test_fraction must be < 1")
    need(tk.max_train is None or tk.max_train >= 2, "task.max_train", f"must be at least 2, got {tk.max_train}")
    need(tk.kind is None or tk.kind in catalog.KINDS, "task.kind",
         f"must be 'classification' or 'regression', got {tk.kind!r}")
    dev = c.device
    need(dev in ("auto", "cpu", "cuda") or _is_cuda_index(dev), "device",
         f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {dev!r}")
    need(c.seed >= limits.SEED_RANGE[0], "seed", f"must be at least {limits.SEED_RANGE[0]}, got {c.seed}")
    for name, message in limits.upper_bound_errors(c).items():  # sizes and step counts, each capped
        need(False, name, message)
    return e


def check_task(task: TaskConfig, seed: int = 0) -> dict[str, str]:
    """Dataset and model checks: unknown names, missing files, shape fit, and whether the data splits
    with the task's fractions (the split `seed` makes, on the labels). Torch-free (numpy only): the
    worker's verdicts from the catalogue's facts and the files' contents (`tasks.describe`)."""
    if task.dataset not in catalog.DATASET_NAMES:
        return {"task.dataset": f"unknown dataset {task.dataset!r}; known: {', '.join(catalog.DATASET_NAMES)}"}
    if task.model not in catalog.MODEL_NAMES:
        return {"task.model": f"unknown model {task.model!r}; known: {', '.join(catalog.MODEL_NAMES)}"}
    from search_engine.tasks import describe  # numpy, no torch

    try:
        info = describe.check_dataset(dataset_spec(task), seed)
    except describe.DataError as exc:
        return {f"task.{exc.field}" if exc.field else data_field(task): str(exc)}
    try:
        describe.check_model_fits(task.model, info)
    except ValueError as exc:
        return {"task.model": str(exc)}
    return {}


def data_field(task: TaskConfig) -> str:
    """The configuration field a problem with the task's data is reported under."""
    if task.dataset in catalog.FILE_DATASETS:
        return "task.data_file"
    return "task.dataset" if task.dataset in catalog.BUILTIN_DATASETS else "task.data_root"


def dataset_spec(task: TaskConfig):
    """The datasets module's spec for this task (a torch-free type)."""
    from search_engine.tasks.dataspec import DatasetSpec

    return DatasetSpec(
        name=task.dataset, data_root=task.data_root, data_file=task.data_file, label=task.label,
        kind=task.kind, val_fraction=task.val_fraction, test_fraction=task.test_fraction,
        max_train=task.max_train,
    )


def load_config(source: dict | str | Path, *, check_data: bool = True) -> ExperimentConfig:
    """Parse and validate a configuration from a dict, a JSON string or a path to a JSON file.

    Raises ConfigError listing every problem. With `check_data`, the dataset is looked up and
    the model checked against its shape (this imports torch).
    """
    data = _read_source(source)
    errors: dict[str, str] = {}
    config = _build(ExperimentConfig, data, "", errors)
    if errors:
        raise ConfigError(errors)
    errors = _check_ranges(config)
    if not errors and check_data:
        errors = check_task(config.task, config.seed)
    if errors:
        raise ConfigError(errors)
    return config


def _read_source(source: dict | str | Path) -> Any:
    if not isinstance(source, (str, Path)):
        return source  # a dict, or any other JSON value (reported by _build as "must be an object")
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        path = Path(source)
        try:
            text = path.read_text()
        except (OSError, ValueError) as exc:  # ValueError: a null byte in the path, or non-UTF-8 bytes
            raise ConfigError({"config": f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"}) from exc
    else:
        text = source
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError({"config": f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"}) from exc
    except RecursionError as exc:
        raise ConfigError({"config": "invalid JSON: nested too deeply"}) from exc


def replace(config: ExperimentConfig, **sections: Any) -> ExperimentConfig:
    """Copy of `config` with whole sections or top-level fields replaced (for tests and presets)."""
    return dataclasses.replace(config, **sections)
