"""The facts about lfl that the engine, the web pages and the browser all need, written once.

Torch-free and cheap to import: a web page reads its option lists, metric names and download
formats from here without loading the numeric stack. The engine's registries (dataset loaders,
model builders, export renderers) are keyed by these names, and tests check that every name here
has exactly one implementation there. Installed plugins add data sets and models (`search_engine.plugins`):
`datasets()`, `models()`, `data_facts()` and `dataset_kind()` list them beside the built-in ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from search_engine import plugins


@dataclass(frozen=True)
class TaskKind:
    """What a search on one kind of task minimizes, and what a learned loss is compared with."""

    name: str
    metric: str  # what a fitness value measures (lower is better)
    baseline: str  # the loss a learned loss must beat
    baseline_expression: str  # that loss in prefix form (seeded into the first generation)
    baseline_label: str  # that loss in words, as reports name it ("no better than cross-entropy ...")


TASK_KINDS: dict[str, TaskKind] = {
    k.name: k
    for k in (
        TaskKind("classification", "error rate", "cross_entropy", "mul(-1, mul(y, log(f)))", "cross-entropy"),
        TaskKind("regression", "MSE", "squared_error", "square(sub(y, f))", "squared error"),
    )
}
KINDS: tuple[str, ...] = tuple(TASK_KINDS)
METRICS: tuple[str, ...] = tuple(k.metric for k in TASK_KINDS.values())
BASELINES: dict[str, str] = {k.baseline: k.baseline_expression for k in TASK_KINDS.values()}


def task_kind(kind: str) -> TaskKind:
    """The TaskKind called `kind`; ValueError naming the known kinds otherwise."""
    if kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return TASK_KINDS[kind]


def metric_name(kind: str) -> str:
    """"error rate" for classification, "MSE" for regression."""
    return task_kind(kind).metric


def baseline_name(kind: str) -> str:
    """"cross_entropy" for classification, "squared_error" for regression."""
    return task_kind(kind).baseline


def baseline_label(kind: str) -> str:
    """"cross-entropy" for classification, "squared error" for regression: the baseline in words."""
    return task_kind(kind).baseline_label


def kind_of_baseline(baseline: str) -> str:
    """The task kind whose baseline loss is `baseline`; ValueError naming the known baselines otherwise."""
    for kind in TASK_KINDS.values():
        if kind.baseline == baseline:
            return kind.name
    raise ValueError(f"unknown baseline_loss {baseline!r}; expected one of {', '.join(BASELINES)}")


@dataclass(frozen=True)
class Dataset:
    """A dataset name a configuration may use."""

    name: str
    label: str  # short option label for a form's select
    source: str  # "builtin" (bundled), "file" (a user's CSV/NPZ), "vision" (torchvision on-disk layout) or "plugin"
    kind: str | None  # the task kind, or None where the configuration's `task.kind` says it


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("digits", "digits (8×8, built in)", "builtin", "classification"),
        Dataset("digits28", "digits28 (28×28 digits)", "builtin", "classification"),
        Dataset("diabetes", "diabetes (regression)", "builtin", "regression"),
        Dataset("csv", "csv (uploaded file)", "file", None),
        Dataset("npz", "npz (uploaded file)", "file", None),
        Dataset("mnist", "mnist", "vision", "classification"),
        Dataset("fashion_mnist", "fashion_mnist", "vision", "classification"),
        Dataset("cifar10", "cifar10", "vision", "classification"),
        Dataset("cifar100", "cifar100", "vision", "classification"),
        Dataset("svhn", "svhn", "vision", "classification"),
    )
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
BUILTIN_DATASETS: tuple[str, ...] = tuple(n for n, d in DATASETS.items() if d.source == "builtin")
FILE_DATASETS: tuple[str, ...] = tuple(n for n, d in DATASETS.items() if d.source == "file")
VISION_DATASETS: tuple[str, ...] = tuple(n for n, d in DATASETS.items() if d.source == "vision")


def dataset_kind(name: str, configured_kind: str = "classification") -> str:
    """The task kind of dataset `name` (a plugin's too); file datasets take the configuration's `task.kind`."""
    entry = datasets().get(name)
    return configured_kind if entry is None or entry.kind is None else entry.kind


MODEL_NAMES: tuple[str, ...] = ("logistic", "mlp", "lenet5", "allcnnc", "resnet18", "wideresnet")


@dataclass(frozen=True)
class DataFacts:
    """What a configuration check knows about a built-in or torchvision dataset without reading it."""

    input_shape: tuple[int, ...]  # per-sample feature shape
    n_outputs: int  # classes, or regression targets
    class_counts: tuple[int, ...] = ()  # built-in classification: samples of each class id
    n_samples: int = 0  # built-in: samples in the pool the splits are carved from
    files: tuple[str, ...] = ()  # torchvision: files expected under data_root, in torchvision's layout


def _mnist_files(folder: str) -> tuple[str, ...]:
    return tuple(f"{folder}/raw/{part}-{what}-ubyte" for part in ("train", "t10k")
                 for what in ("images-idx3", "labels-idx1"))


_DIGITS_PER_CLASS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)  # sklearn's digits, 1797 in all
_CIFAR10 = tuple(f"cifar-10-batches-py/{name}" for name in (
    "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"))

DATA_FACTS: dict[str, DataFacts] = {
    "digits": DataFacts((1, 8, 8), 10, _DIGITS_PER_CLASS, sum(_DIGITS_PER_CLASS)),
    "digits28": DataFacts((1, 28, 28), 10, _DIGITS_PER_CLASS, sum(_DIGITS_PER_CLASS)),
    "diabetes": DataFacts((10,), 1, n_samples=442),
    "mnist": DataFacts((1, 28, 28), 10, files=_mnist_files("MNIST")),
    "fashion_mnist": DataFacts((1, 28, 28), 10, files=_mnist_files("FashionMNIST")),
    "cifar10": DataFacts((3, 32, 32), 10, files=_CIFAR10),
    "cifar100": DataFacts((3, 32, 32), 100, files=("cifar-100-python/train", "cifar-100-python/test",
                                                   "cifar-100-python/meta")),
    "svhn": DataFacts((3, 32, 32), 10, files=("train_32x32.mat", "test_32x32.mat")),
}

#: Smallest image side (H and W) each image model accepts; the other models flatten any input.
MODEL_MIN_IMAGE_SIDE: dict[str, int] = {"lenet5": 12, "allcnnc": 9, "resnet18": 8, "wideresnet": 4}


@dataclass(frozen=True)
class Model:
    """A model name a configuration may use, and the inputs the model takes."""

    name: str
    label: str  # option text of a form's select
    source: str  # "builtin" or "plugin"
    min_image_side: int | None = None  # None: any input (it flattens it); n: (C, H, W) images with H, W >= n
    min_features: int = 0  # the fewest input values per sample (the built-ins set no floor)
    kinds: tuple[str, ...] = KINDS  # the task kinds it is meant for


MODELS: dict[str, Model] = {n: Model(n, n, "builtin", MODEL_MIN_IMAGE_SIDE.get(n)) for n in MODEL_NAMES}


# ------------------------------------------------------------------ the built-ins and the installed plugins


def installed_plugins() -> plugins.Installed:
    """The plugins of this environment (`search_engine.plugins`), checked against the built-ins; read once."""
    return plugins.installed(KINDS, DATASET_NAMES, MODEL_NAMES)


def plugin_errors() -> tuple[plugins.PluginError, ...]:
    """The plugins that are not offered, each with its entry point, package and problem."""
    return installed_plugins().errors


def plugin_dataset(name: str) -> plugins.Plugged | None:
    """The installed plugin data set `name` (its facts and origin), or None."""
    return installed_plugins().datasets.get(name)


def plugin_model(name: str) -> plugins.Plugged | None:
    """The installed plugin model `name` (its facts and origin), or None."""
    return installed_plugins().models.get(name)


def datasets() -> dict[str, Dataset]:
    """Every dataset a configuration may name: the built-in ones, then those of the installed plugins."""
    found = installed_plugins().datasets
    return {**DATASETS, **{n: Dataset(n, p.facts.label, "plugin", p.facts.kind) for n, p in found.items()}}


def dataset_names() -> tuple[str, ...]:
    """The names of `datasets()`."""
    return tuple(datasets())


def data_facts(name: str) -> DataFacts | None:
    """What a check knows of dataset `name` without reading it (built-in, torchvision or plugin); None for
    file datasets and unknown names."""
    if name in DATA_FACTS:
        return DATA_FACTS[name]
    plugged = plugin_dataset(name)
    if plugged is None:
        return None
    facts = plugged.facts
    return DataFacts(facts.input_shape, facts.n_outputs, facts.class_counts, facts.sample_count)


def models() -> dict[str, Model]:
    """Every model a configuration may name: the built-in ones, then those of the installed plugins."""
    found = {n: p.facts for n, p in installed_plugins().models.items()}
    return {**MODELS, **{n: Model(n, f.label, "plugin", f.min_image_side, f.min_features, f.kinds or KINDS)
                         for n, f in found.items()}}


def model_names() -> tuple[str, ...]:
    """The names of `models()`."""
    return tuple(models())


def model_fit_problem(model: str, dataset: str, kind: str, input_shape: tuple[int, ...]) -> str | None:
    """Why `model` (a known name) cannot be trained on `dataset`, a `kind` task with samples of
    `input_shape`; None when it can. The message a configuration check reports on task.model."""
    entry = models()[model]
    shape = tuple(input_shape)
    if kind not in entry.kinds:
        return f"{model} is a model for {' and '.join(entry.kinds)}; dataset {dataset!r} is a {kind} task"
    side = entry.min_image_side
    if side is not None and (len(shape) != 3 or min(shape[1:]) < side or shape[0] < 1):
        return f"{model} needs image input of at least {side}x{side} with shape (C, H, W); dataset {dataset!r} gives {shape}"
    if math.prod(shape) < entry.min_features:
        return (f"{model} needs at least {entry.min_features} input values per sample; dataset {dataset!r} gives "
                f"{shape} ({math.prod(shape)})")
    return None


@dataclass(frozen=True)
class Method:
    """A loss-learning method: how a configuration names it and how pages describe it."""

    name: str
    label: str
    description: str
    symbolic: bool = True  # its losses are expressions (a Pareto front of size vs fitness means something)
    refines_weights: bool = False  # its edge weights refine a symbolic loss (meta-tests also try all weights 1)
    round_name: str = "generation"  # what pages call one point of its curve (one GenerationFinished)
    strategy: str = ""  # "module:attribute" of its strategy object (search_engine.study.method.Method)
    # The configuration it reads of the sections not every method reads: a section ("rejection") or
    # one field ("search.population_size"); the form shows a field to the methods that read it.
    reads: tuple[str, ...] = ()
    scored: str = "candidates"  # what the work estimate calls the losses it scores by training
    lr_protocol: bool = True  # it scores losses by training, so training.lr_protocol decides its fitness

    @property
    def rounds(self) -> str:
        """`round_name` in the plural ("generations", "snapshots")."""
        return f"{self.round_name}s"


#: What the genetic-programming search reads (EvoMAL; GP-LFL reads no local search).
_GP_SECTIONS = ("search", "rejection", "local_search", "evaluation")

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("evomal", "EvoMAL", "genetic programming over loss expressions, each accepted loss refined "
                                   "by unrolled meta-gradients (Raymond et al., TPAMI 2023)", refines_weights=True,
               strategy="search_engine.methods.evolutionary:EVOMAL", reads=_GP_SECTIONS),
        Method("gplfl", "GP-LFL", "the same genetic-programming search without local search: symbolic "
                                  "losses only (the EvoMAL paper's GP-LFL baseline)",
               strategy="search_engine.methods.evolutionary:GPLFL", reads=("search", "rejection", "evaluation")),
        Method("ml3", "ML3", "a small neural network as the loss, its weights learned by unrolled "
                             "meta-gradients (Bechtle et al., ICPR 2020; offline variant)", symbolic=False,
               round_name="snapshot",  # the network scored every ml3.report_every meta steps
               strategy="search_engine.methods.ml3:ML3", reads=("ml3",),
               scored="scored snapshots of the loss network", lr_protocol=False),
        Method("taylorglo", "TaylorGLO", "CMA-ES over the coefficients of a third-order Taylor polynomial "
                                         "in prediction and target (Gonzalez & Miikkulainen, GECCO 2021)",
               strategy="search_engine.methods.taylorglo:TAYLORGLO",
               reads=("taylorglo", "search.hall_of_fame_size", "evaluation"), scored="candidate polynomials"),
        Method("random", "Random search", "EvoMAL's budget and scoring with every generation drawn afresh from "
                                          "the first one's distribution, no evolution: what evolution must beat",
               refines_weights=True, strategy="search_engine.methods.random_search:RANDOM",
               reads=("search.population_size", "search.generations", "search.hall_of_fame_size",
                      "search.init_min_height", "search.init_max_height", "search.seed_known_losses",
                      "rejection", "local_search", "evaluation")),
    )
}


@dataclass(frozen=True)
class ExportFormat:
    """A download format of a learned loss (the engine's `export.formats` renders each)."""

    name: str
    extension: str
    label: str  # link text on pages
    content_type: str  # HTTP Content-Type of the download
    description: str


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("torch", ".py", "PyTorch module (.py)", "text/x-python; charset=utf-8",
                     "standalone PyTorch module (imports only torch)"),
        ExportFormat("torchscript", ".pt", "TorchScript (.pt)", "application/octet-stream",
                     "TorchScript archive for torch.jit.load"),
        ExportFormat("latex", ".tex", "LaTeX (.tex)", "application/x-tex; charset=utf-8",
                     "LaTeX document with the formula"),
        ExportFormat("json", ".json", "JSON (.json)", "application/json",
                     "versioned JSON, re-importable with from_json_export"),
    )
}


def method_reads(method: str, path: str) -> bool:
    """Whether `method` reads configuration field `path` ("section.field", or a whole section): every
    method reads a section that no method names in `reads` (task, training, meta-test, ...)."""
    section = path.split(".")[0]
    if all(section != r.split(".")[0] for m in METHODS.values() for r in m.reads):
        return True
    reads = METHODS[method].reads
    return path in reads or section in reads
