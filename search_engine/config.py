"""Experiment configuration: frozen dataclasses with EvoMAL's defaults, validated once at the boundary.

`load_config(dict_or_path)` is the single entry point for untrusted input (JSON files, web forms,
API calls). It rejects unknown fields, wrong types and out-of-range values with a `ConfigError`
that lists every problem with its dotted field name, e.g. ``search.crossover_rate: must be in
[0, 1], got 1.5``. This module imports neither torch nor sympy, so a web page can validate a
configuration without loading the numeric stack; the dataset/model checks are imported lazily.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_engine import catalog
from search_engine.fields import (
    MAX_BATCH,
    MAX_POPULATION,
    MAX_TREE_HEIGHT,
    POSITIVE_META_RATE,
    POSITIVE_RATE,
    PROBABILITY,
    SEED_RANGE,
    SHARE_OF_DATA,
    FloatRange,
    facts,
    range_errors,
    setting,
)
from search_engine.methods.settings import ML3Settings, TaylorGLOSettings
from search_engine.parsing import ConfigError, build, is_cuda_index, read_source


@dataclass(frozen=True)
class TaskConfig:
    """What the losses are learned on: a dataset and a model."""

    dataset: str = setting("digits", label="Dataset", help="A catalogue dataset: digits, digits28 and diabetes are "
                           "built in; csv and npz read the data file; mnist, cifar10, ... are read from the data root.")
    model: str = setting("mlp", label="Model", help="A catalogue model, checked against the data's shape.")
    data_root: str | None = setting(None, label="Data root", help="Server folder holding torchvision datasets "
                                    "(mnist, cifar10, ...).")
    data_file: str | None = setting(None, label="Data file", help="Your own data for dataset csv or npz.")
    label: str | None = setting(None, label="Label", help="CSV label column or NPZ label key (default: y / the "
                                "last column).")
    kind: str | None = setting(None, label="Kind", choices=catalog.KINDS, help="For an uploaded file: what its "
                               "labels are.")
    val_fraction: float = setting(0.2, label="Validation fraction", range=SHARE_OF_DATA,
                                  help="Share of the training data held out to score losses.")
    test_fraction: float = setting(0.2, label="Test fraction", range=SHARE_OF_DATA,
                                   help="Share held out for the meta-test (built-in and uploaded data; mnist, "
                                   "cifar10, ... use their official test split).")
    max_train: int | None = setting(None, label="Max training samples", at_least=2, at_most=10_000_000,
                                    help="Subsample the training split (blank: all).",
                                    reason="no bundled, torchvision or 200 MB uploaded set has more samples")


@dataclass(frozen=True)
class SearchSettings:
    """The genetic-programming loop. Defaults follow EvoMAL (Raymond et al., TPAMI 2023)."""

    population_size: int = setting(25, label="Population size", at_least=2, at_most=MAX_POPULATION,
                                   help="Loss expressions per generation.",
                                   reason="EvoMAL uses 25, GP papers rarely exceed a few thousand")
    generations: int = setting(50, label="Generations", at_least=1, at_most=10_000,
                               reason="EvoMAL runs 50; a resumed search may raise it again")
    crossover_rate: float = setting(0.7, label="Crossover rate", range=PROBABILITY)
    mutation_rate: float = setting(0.25, label="Mutation rate", range=PROBABILITY,
                                   help="Crossover + mutation rate must be at most 1.")
    tournament_size: int = setting(4, label="Tournament size", at_least=1, at_most=MAX_POPULATION,
                                   reason="drawn from the population: larger is meaningless")
    # EvoMAL configures 5% but never applies it; lfl applies it.
    elitism_rate: float = setting(0.05, label="Elitism rate", range=PROBABILITY,
                                  help="Share of the best kept unchanged for the next generation.")
    init_min_height: int = setting(2, label="Initial min height", at_least=1, at_most=MAX_TREE_HEIGHT,
                                   help="Heights of the random trees of the first generation (ramped half-and-half).")
    init_max_height: int = setting(4, label="Initial max height", at_least=1, at_most=MAX_TREE_HEIGHT)
    max_height: int = setting(10, label="Max tree height", at_least=1, at_most=MAX_TREE_HEIGHT,
                              help="No operator may grow a tree past it (at most 17).",
                              reason="Koza's static limit, DEAP's default")
    mutation_min_height: int = setting(0, label="Mutation min height", at_least=0, at_most=MAX_TREE_HEIGHT,
                                       help="Height of the random subtree a mutation inserts.")
    mutation_max_height: int = setting(2, label="Mutation max height", at_least=0, at_most=MAX_TREE_HEIGHT,
                                       reason="a taller inserted subtree breaks max_height anyway")
    seed_known_losses: bool = setting(True, label="Seed known losses",
                                      help="Start from cross-entropy / squared error.")
    hall_of_fame_size: int = setting(10, label="Hall of fame size", at_least=1, at_most=1_000,
                                     help="How many of the best losses are kept and listed.",
                                     reason="each entry becomes a stored, exportable learned loss (EvoMAL: 10)")


LR_PROTOCOLS = ("tuned", "fixed")


@dataclass(frozen=True)
class TrainingConfig:
    """How a candidate loss is scored: train the task's model from a fixed seed with SGD."""

    steps: int = setting(500, label="Training steps", at_least=1, at_most=1_000_000,
                         help="SGD steps of each fitness training: every loss scored trains a fresh model this long.",
                         reason="EvoMAL's fitness uses 500, its full meta-test training 100 000")
    batch_size: int = setting(128, label="Batch size", at_least=1, at_most=MAX_BATCH)
    lr: float = setting(0.01, label="Learning rate", range=POSITIVE_RATE,
                        reason="above the largest rate the meta-test's tuning tries, 10^1.5")
    momentum: float = setting(0.0, label="Momentum", range=FloatRange(0.0, 1.0, high_open=True),
                              reason="at 1 the velocity never decays")
    nesterov: bool = setting(False, label="Nesterov")
    weight_decay: float = setting(0.0, label="Weight decay", range=FloatRange(0.0, 1.0),
                                  reason="EvoMAL's CIFAR setting is 5e-4; at 1 the decay outweighs any loss")
    # "tuned": the search trains at the baseline's best rate (picked on validation from a grid around
    # `lr`) and every candidate loss is scaled to the baseline's gradient size, so no candidate can win
    # by being a rescaled baseline (scoring.protocol). "fixed": every loss as it is, at `lr` (the paper).
    lr_protocol: str = setting("tuned", label="Learning-rate protocol", choices=LR_PROTOCOLS,
                               choice_labels=("tuned: the baseline's best rate, losses at its gradient scale",
                                              "fixed: the learning rate as given (the paper's protocol)"),
                               help="Tuned: every loss trains at the baseline's best rate, scaled to the baseline's "
                               "gradient size, so no loss wins by acting as a different learning rate. Fixed: the "
                               "paper's protocol, every loss as it is at the learning rate above.")


@dataclass(frozen=True)
class RejectionConfig:
    """Cheap screen run before training: optimize a fixed subset's outputs directly under the loss."""

    enabled: bool = setting(True, label="Screen candidates first",
                            help="Reject a loss that ignores the prediction, or under which directly optimizing a "
                            "fixed subset's outputs does not improve the metric, before training with it.")
    steps: int = setting(100, label="Screen steps", at_least=1, at_most=100_000,
                         help="Adam steps on the subset's outputs (at the training learning rate).",
                         reason="EvoMAL screens with 100 cheap steps on outputs, not on a model")
    samples: int = setting(100, label="Screen samples", at_least=2, at_most=1_000_000,
                           help="Size of the fixed training subset.",
                           reason="EvoMAL: 100; a larger subset is the whole training split")


LOCAL_SEARCH_MODES = ("off", "all", "top_k")


@dataclass(frozen=True)
class LocalSearchConfig:
    """Gradient refinement of a symbolic loss's edge weights through unrolled training steps."""

    mode: str = setting("all", label="Mode", choices=LOCAL_SEARCH_MODES,
                        choice_labels=("off (pure GP)", "all (EvoMAL)", "top k per generation"),
                        help="Learn edge weights for every accepted candidate (all, EvoMAL), only each generation's "
                        "k best (top_k), or none (off, pure GP).")
    top_k: int = setting(5, label="Top k", at_least=1, at_most=MAX_POPULATION,
                         help="With mode top k: how many of each generation's best are refined.",
                         reason="at most the whole population is refined")
    meta_steps: int = setting(250, label="Meta steps", at_least=1, at_most=100_000, reason="EvoMAL: 250")
    inner_steps: int = setting(1, label="Inner steps", at_least=1, at_most=100,
                               help="Differentiable SGD steps per meta step.",
                               reason="unrolled: memory grows with every inner step (EvoMAL: 1)")
    meta_lr: float = setting(1e-3, label="Meta learning rate", range=POSITIVE_META_RATE,
                             help="Adam on the loss weights; the inner rate is the training learning rate.")
    batch_size: int = setting(128, label="Meta batch size", at_least=1, at_most=MAX_BATCH,
                              help="Training and validation batch of each meta step.")


@dataclass(frozen=True)
class MetaTestConfig:
    """Meta-testing: train from scratch with the learned loss and with the baseline, several seeds."""

    steps: int = setting(2000, label="Meta-test steps", at_least=1, at_most=1_000_000,
                         help="Training steps per model when the best loss is tested against the baseline.",
                         reason="EvoMAL's MNIST/CIFAR meta-test trains 100 000 steps")
    seeds: int = setting(5, label="Meta-test seeds", at_least=1, at_most=1_000,
                         help="Models trained with each loss, one per seed.",
                         reason="EvoMAL reports 10; a paired t-test needs no more than hundreds")
    lr_milestones: tuple[int, ...] = setting((), label="Meta-test LR milestones", at_most=1_000_000,
                                             help="Steps at which the meta-test's learning rate is multiplied by "
                                             "lr_gamma (the reference's CIFAR schedule: 150 000 steps, x0.1 at "
                                             "100 000 and 135 000).")
    lr_gamma: float = setting(0.1, label="Meta-test LR decay", range=FloatRange(0.0, 1.0, low_open=True),
                              help="Factor applied at each milestone.", reason="1 keeps the rate, 0 stops training")
    # On by default: at the search's rate alone, a loss that only rescales the baseline's gradient looks better.
    tune_lr: bool = setting(True, label="At each loss's best learning rate",
                            help="Meta-test the learned loss and the baseline again, each at its own best learning "
                            "rate picked on validation data; reports lead with this comparison. Off: only at the "
                            "search's learning rate (the paper's protocol), where a loss that rescales the gradient "
                            "can look better; faster.")


EVALUATION_STRATEGIES = ("auto", "measure", "sequential", "batched")


@dataclass(frozen=True)
class EvaluationConfig:
    """How candidates are scored: one after another, or a population of models as one program."""

    strategy: str = setting("auto", label="Evaluation strategy", choices=EVALUATION_STRATEGIES,
                            help="“sequential” trains one candidate at a time, “batched” a chunk of them as one "
                            "program, “auto” picks by the model and the device, “measure” times both on the task. A "
                            "cancel stops within a few training steps: with “sequential” between single candidates "
                            "(only the one in training is lost), with “batched” the chunk's unfinished candidates are "
                            "dropped.")
    max_population_chunk: int = setting(25, label="Max population chunk", at_least=1, at_most=MAX_POPULATION,
                                        help="Most candidates trained together as one program; also the chunk a "
                                        "worker takes, so smaller chunks spread a generation over more workers.")
    # A thread count changes float rounding (a matrix product splits its sums by thread), so it is part
    # of the configuration, not of the machine or of how many workers share it.
    threads: int = setting(1, label="CPU threads", at_least=1, at_most=256,
                           help="Torch threads for the search's math on a CPU. Part of the result: a thread count "
                           "changes float rounding, so it is not taken from the machine.",
                           reason="beyond any CPU a worker has")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment. `seed` drives every random choice of the search."""

    method: str = setting("evomal", label="Method", choices=tuple(catalog.METHODS),
                          help="How losses are learned (docs/methods.md).")
    task: TaskConfig = field(default_factory=TaskConfig)
    search: SearchSettings = field(default_factory=SearchSettings)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    local_search: LocalSearchConfig = field(default_factory=LocalSearchConfig)
    meta_test: MetaTestConfig = field(default_factory=MetaTestConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    ml3: ML3Settings = field(default_factory=ML3Settings)  # used when method is "ml3"
    taylorglo: TaylorGLOSettings = field(default_factory=TaylorGLOSettings)  # when method is "taylorglo"
    seed: int = setting(0, label="Seed", at_least=SEED_RANGE[0], at_most=SEED_RANGE[1],
                        help="Drives every random choice of the search.",
                        reason="what numpy and scikit-learn accept as a random state (the splits use it)")
    device: str = setting("auto", label="Device", help="auto (cuda if available), cpu, cuda or cuda:N.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary (the stored form: lists, not tuples, as JSON gives them back)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# ---------------------------------------------------------------- parsing


def _check_ranges(c: ExperimentConfig) -> dict[str, str]:
    """Semantic checks that need no data: each field's own range (`fields.range_errors`, from the
    facts beside the field), then what fields must satisfy together."""
    e: dict[str, str] = {}

    def need(ok: bool, name: str, message: str) -> None:
        if not ok and name not in e:
            e[name] = message

    need(c.method in catalog.METHODS, "method",
         f"must be one of {', '.join(catalog.METHODS)}, got {c.method!r}")
    read = (lambda dotted: catalog.method_reads(c.method, dotted)) if c.method in catalog.METHODS else None
    for name, message in (range_errors(c, read) if read else range_errors(c)).items():
        need(False, name, message)
    s, t, m, tk = c.search, c.training, c.meta_test, c.task
    need(
        s.crossover_rate + s.mutation_rate <= 1.0 + 1e-12, "search.mutation_rate",
        f"crossover_rate + mutation_rate must be at most 1, got {s.crossover_rate + s.mutation_rate:g}",
    )
    need(
        s.init_max_height >= s.init_min_height, "search.init_max_height",
        f"must be at least init_min_height ({s.init_min_height}), got {s.init_max_height}",
    )
    need(
        s.max_height >= s.init_max_height, "search.max_height",
        f"must be at least init_max_height ({s.init_max_height}), got {s.max_height}",
    )
    need(
        s.mutation_max_height >= s.mutation_min_height, "search.mutation_max_height",
        f"must be at least mutation_min_height ({s.mutation_min_height}), got {s.mutation_max_height}",
    )
    need(not t.nesterov or t.momentum > 0, "training.nesterov", "Nesterov needs momentum > 0")
    ms = m.lr_milestones
    need(all(a < b for a, b in zip((0, *ms), ms)), "meta_test.lr_milestones",
         f"must be increasing positive step numbers, got {list(ms)}")
    need(tk.val_fraction + tk.test_fraction < 1.0, "task.test_fraction", "val_fraction + test_fraction must be < 1")
    dev = c.device
    need(dev in ("auto", "cpu", "cuda") or is_cuda_index(dev), "device",
         f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {dev!r}")
    return e


def check_task(task: TaskConfig, seed: int = 0) -> dict[str, str]:
    """Dataset and model checks: unknown names, missing files, shape fit, and whether the data splits
    with the task's fractions (the split `seed` makes, on the labels). Torch-free (numpy only): the
    worker's verdicts from the catalogue's facts and the files' contents (`tasks.describe`)."""
    datasets, models = catalog.dataset_names(), catalog.model_names()  # the installed plugins' too
    if task.dataset not in datasets:
        return {"task.dataset": f"unknown dataset {task.dataset!r}; known: {', '.join(datasets)}"}
    if task.model not in models:
        return {"task.model": f"unknown model {task.model!r}; known: {', '.join(models)}"}
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
    return "task.data_root" if task.dataset in catalog.VISION_DATASETS else "task.dataset"


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
    data = read_source(source)
    errors: dict[str, str] = {}
    config = build(ExperimentConfig, data, "", errors)
    if errors:
        raise ConfigError(errors)
    errors = _check_ranges(config)
    if not errors and check_data:
        errors = check_task(config.task, config.seed)
    if errors:
        raise ConfigError(errors)
    return config


def config_field(dotted: str):
    """(Setting, annotation, default) of configuration field `dotted`: what a form needs to offer it."""
    return facts(ExperimentConfig, dotted)


def replace(config: ExperimentConfig, **sections: Any) -> ExperimentConfig:
    """Copy of `config` with whole sections or top-level fields replaced (for tests and presets)."""
    return dataclasses.replace(config, **sections)
