"""Models and data sets that installed packages add: the facts a plugin declares, and finding them.

A package registers a data set under the entry-point group `lfl.datasets` and a model under
`lfl.models` (its pyproject.toml's `[project.entry-points."lfl.models"]`); each entry point names a
`DatasetPlugin` or `ModelPlugin` object in a module of the package that imports no torch. The facts
say what pages and configuration checks need (names, kinds, shapes, class counts); the loader and
the builder they name ("module:function") are imported only where data is loaded or a model built.

`installed(...)` reads every entry point once per process and checks each facts object. A plugin
whose module does not import, whose facts are invalid or whose name is taken becomes a
`PluginError` naming its entry point, its package and the problem; the others stay usable. The
catalogue (`search_engine.catalog`) passes in the task kinds and the built-in names and lists the
plugins' rows beside its own. Standard library only: the web process imports this module.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from importlib import import_module, metadata
from typing import Any

DATASET_GROUP = "lfl.datasets"
MODEL_GROUP = "lfl.models"

#: A plugin's name: what configurations, URLs and file names hold (lower case, a letter first).
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: "package.module:function" (the function may be an attribute path, "module:Class.method").
TARGET_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
MAX_LABEL = 60  # characters of a form option's text


@dataclass(frozen=True)
class DatasetPlugin:
    """A data set a plugin adds: what a configuration check knows of it without loading it."""

    name: str  # how configurations name it (NAME_PATTERN); the entry point's name
    label: str  # the form's option text
    kind: str  # "classification" or "regression"
    input_shape: tuple[int, ...]  # one sample's feature shape: (30,), (3, 10), (1, 28, 28)
    n_outputs: int  # classes (at least 2), or regression targets
    # "module:function"; function() -> (x, y) numpy arrays: x (N, *input_shape) real numbers, y (N,) class
    # ids 0..n_outputs-1 for classification, (N,) or (N, n_outputs) real targets for regression
    loader: str
    class_counts: tuple[int, ...] = ()  # classification: how many samples of class 0, 1, ... (all of them)
    n_samples: int = 0  # regression: how many samples (classification: the class counts' sum, or 0)
    image: bool = False  # True: (C, H, W) images, each channel standardized as a whole; False: each feature

    @property
    def sample_count(self) -> int:
        """The number of samples the loader returns."""
        return sum(self.class_counts) if self.class_counts else self.n_samples


@dataclass(frozen=True)
class ModelPlugin:
    """A model a plugin adds: which inputs it takes, and where its builder is."""

    name: str  # how configurations name it (NAME_PATTERN); the entry point's name
    label: str  # the form's option text
    # "module:function"; function(info: DatasetInfo, seed: int) -> torch.nn.Module mapping a batch
    # (B, *info.input_shape) to (B, info.n_outputs); the global torch generator is seeded with `seed`
    builder: str
    kinds: tuple[str, ...] | None = None  # the task kinds it is meant for; None: every kind
    min_image_side: int | None = None  # None: any input shape; n: (C, H, W) images with H, W >= n (as lenet5)
    min_features: int = 1  # the fewest input values per sample (the product of the input shape)


@dataclass(frozen=True)
class Origin:
    """Where a plugin comes from: its entry point and the package that declares it."""

    group: str
    name: str
    value: str
    package: str

    def __str__(self) -> str:
        return f"entry point {self.name!r} ({self.value}) in group {self.group} of package {self.package}"


@dataclass(frozen=True)
class PluginError:
    """A plugin that is not offered, and why."""

    origin: Origin
    problem: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.problem}"


@dataclass(frozen=True)
class Plugged:
    """A plugin's checked facts (a DatasetPlugin or a ModelPlugin) and where they come from."""

    facts: Any
    origin: Origin


@dataclass(frozen=True)
class Installed:
    """Every plugin of this environment: the usable ones by name, and the ones that failed."""

    datasets: dict[str, Plugged]
    models: dict[str, Plugged]
    errors: tuple[PluginError, ...]


class PluginLoadError(ValueError):
    """A plugin's loader or builder could not be imported; the message names the plugin and the target."""


def entry_points_in(group: str) -> list[metadata.EntryPoint]:
    """The entry points of `group` in the installed distributions, in a fixed order."""
    found = metadata.entry_points(group=group)
    return sorted(found, key=lambda ep: (ep.name, ep.value, _package(ep)))


@functools.lru_cache(maxsize=4)
def installed(kinds: tuple[str, ...], builtin_datasets: tuple[str, ...], builtin_models: tuple[str, ...]) -> Installed:
    """The plugins of this environment, read once per process (`rescan` reads them again), each checked
    against the task `kinds` and the built-in names it may not take."""
    errors: list[PluginError] = []
    datasets = _discover(DATASET_GROUP, DatasetPlugin, lambda f: _dataset_problem(f, kinds), builtin_datasets,
                         "data set", errors)
    models = _discover(MODEL_GROUP, ModelPlugin, lambda f: _model_problem(f, kinds), builtin_models, "model", errors)
    return Installed(datasets, models, tuple(errors))


def rescan() -> None:
    """Forget what `installed` found: the next call reads the entry points again (after an install)."""
    installed.cache_clear()


def load_target(target: str, what: str) -> Any:
    """The callable `target` ("module:function") names; PluginLoadError naming `what` otherwise."""
    module, _, path = target.partition(":")
    try:
        found = import_module(module)
        for part in path.split("."):
            found = getattr(found, part)
    except Exception as exc:  # anything a plugin's import raises is that plugin's fault, reported as such
        raise PluginLoadError(f"{what}: cannot load {target}: {type(exc).__name__}: {exc}") from exc
    if not callable(found):
        raise PluginLoadError(f"{what}: {target} is a {type(found).__name__}, not a function")
    return found


# ------------------------------------------------------------------ discovery and checks


def _package(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown package"


def _discover(group: str, facts_type: type, problem_of, builtin: tuple[str, ...], what: str,
              errors: list[PluginError]) -> dict[str, Plugged]:
    """The usable plugins of one group by name; the others are added to `errors`."""
    usable: list[Plugged] = []
    for ep in entry_points_in(group):
        origin = Origin(group, ep.name, ep.value, _package(ep))
        try:
            facts = ep.load()
        except Exception as exc:  # a plugin's import error must not take the catalogue down
            errors.append(PluginError(origin, f"cannot import it: {type(exc).__name__}: {exc}"))
            continue
        problem = (f"it names a {type(facts).__name__}, not a search_engine.plugins.{facts_type.__name__}"
                   if not isinstance(facts, facts_type) else problem_of(facts))
        if problem is None and facts.name != ep.name:
            problem = f"the entry point is called {ep.name!r} but its facts name the {what} {facts.name!r}"
        if problem is None and facts.name in builtin:
            problem = f"{facts.name!r} is the name of a built-in {what}; choose another"
        if problem is not None:
            errors.append(PluginError(origin, problem))
            continue
        usable.append(Plugged(_normalized(facts), origin))
    found: dict[str, Plugged] = {}
    for plugged in usable:
        others = [p.origin for p in usable if p.facts.name == plugged.facts.name and p is not plugged]
        if others:
            errors.append(PluginError(plugged.origin, f"the {what} name {plugged.facts.name!r} is also registered "
                                                      f"by {'; '.join(map(str, others))}; neither is offered"))
        else:
            found[plugged.facts.name] = plugged
    return found


def _normalized(facts):
    """Facts with sequences as tuples of ints (lists from a plugin compare and hash like tuples)."""
    if isinstance(facts, DatasetPlugin):
        return dataclasses.replace(facts, input_shape=tuple(int(s) for s in facts.input_shape),
                                   class_counts=tuple(int(c) for c in facts.class_counts))
    return dataclasses.replace(facts, kinds=None if facts.kinds is None else tuple(facts.kinds))


def _is_count(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _common_problem(facts) -> str | None:
    """Problems of the name, label and target every plugin has."""
    if not isinstance(facts.name, str) or not facts.name:
        return "its facts have no name"
    if not NAME_PATTERN.fullmatch(facts.name):
        return (f"its name {facts.name!r} is not 1 to 40 lower-case letters, digits and underscores "
                "starting with a letter")
    if not isinstance(facts.label, str) or not facts.label.strip() or len(facts.label) > MAX_LABEL:
        return f"its label must be text of 1 to {MAX_LABEL} characters, got {facts.label!r}"
    field = "loader" if isinstance(facts, DatasetPlugin) else "builder"
    target = getattr(facts, field)
    if not isinstance(target, str) or not TARGET_PATTERN.fullmatch(target):
        return f"its {field} must be written \"package.module:function\", got {target!r}"
    return None


def _dataset_problem(facts: DatasetPlugin, kinds: tuple[str, ...]) -> str | None:
    """Why a data set's facts are unusable, or None."""
    problem = _common_problem(facts)
    shape = facts.input_shape
    if problem:
        return problem
    if facts.kind not in kinds:
        return f"its kind must be one of {', '.join(kinds)}, got {facts.kind!r}"
    if not isinstance(shape, tuple | list) or not shape or not all(_is_count(s, 1) for s in shape):
        return f"its input_shape must be a non-empty tuple of positive whole numbers, got {shape!r}"
    if not isinstance(facts.image, bool):
        return f"its image must be True or False, got {facts.image!r}"
    if facts.image and len(shape) != 3:
        return f"image=True needs a (C, H, W) input_shape, got {tuple(shape)}"
    classify = facts.kind == "classification"
    if not _is_count(facts.n_outputs, 2 if classify else 1):
        what = "classes (at least 2)" if classify else "regression targets (at least 1)"
        return f"its n_outputs must be the number of {what}, got {facts.n_outputs!r}"
    return _sample_problem(facts, classify)


def _sample_problem(facts: DatasetPlugin, classify: bool) -> str | None:
    """The sample counts: class counts for classification, a sample count for regression."""
    counts = facts.class_counts
    if not isinstance(counts, tuple | list) or not _is_count(facts.n_samples, 0):
        return f"class_counts must be a tuple and n_samples a whole number, got {counts!r} and {facts.n_samples!r}"
    if not classify:
        if counts:
            return "class_counts are for classification; a regression data set gives n_samples"
        return None if facts.n_samples >= 1 else "a regression data set must give n_samples (its number of samples)"
    if len(counts) != facts.n_outputs or not all(_is_count(c, 1) for c in counts):
        return (f"class_counts must give the number of samples of each of the {facts.n_outputs} classes "
                f"(each at least 1), got {tuple(counts)!r}")
    if facts.n_samples not in (0, sum(counts)):
        return f"n_samples {facts.n_samples} differs from the class counts' sum {sum(counts)}"
    return None


def _model_problem(facts: ModelPlugin, kinds: tuple[str, ...]) -> str | None:
    """Why a model's facts are unusable, or None."""
    problem = _common_problem(facts)
    if problem:
        return problem
    if facts.kinds is not None and (not isinstance(facts.kinds, tuple | list) or not facts.kinds
                                    or not all(k in kinds for k in facts.kinds)):
        return f"its kinds must be None (every kind) or a tuple of {', '.join(kinds)}, got {facts.kinds!r}"
    if facts.min_image_side is not None and not _is_count(facts.min_image_side, 1):
        return f"its min_image_side must be None or a positive whole number, got {facts.min_image_side!r}"
    if not _is_count(facts.min_features, 1):
        return f"its min_features must be a positive whole number, got {facts.min_features!r}"
    return None
