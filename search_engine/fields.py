"""A configuration field's facts, written once beside its dataclass field. Torch-free.

    population_size: int = setting(25, at_least=2, at_most=MAX_POPULATION, label="Population size",
                                   help="Loss expressions per generation.", reason="EvoMAL uses 25")

`setting(...)` is a dataclass field whose metadata says what the value may be (an integer's least
and largest value, a real number's `FloatRange`, a word's `choices`), why the bound is where it is,
and how a person is told about it (the form's label and help). From these facts come the range
checks of `config.load_config` (`range_errors`), the bound tables of `limits`, the web form's labels
and help, and the configuration reference in docs/configuration.md (`reference_table`; a test keeps
the page current and prints the table when it is not).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_TREE_HEIGHT = 17  # Koza's static limit (DEAP's default); a tree that tall has up to 2**18 nodes
MAX_POPULATION = 10_000  # EvoMAL uses 25, GP papers rarely exceed a few thousand
MAX_BATCH = 65_536  # more than any training split here (MNIST: 54 000): full-batch training fits
SEED_RANGE = (0, 2**32 - 1)  # what numpy/scikit-learn accept as a random_state (the splits use it)
#: SGD's learning rate (training.lr): above the largest rate a meta-test's tuning tries
#: (10 ** 1.5, scoring.tuned_lr), so a tuned rate can be set again; a loss that shrinks its
#: gradients may want such rates, but far larger ones only overflow the weights.
MAX_LEARNING_RATE = 100.0
#: Adam's learning rate (local_search.meta_lr, ml3.meta_lr): Adam moves each weight by about this
#: much per step whatever the gradient's size; EvoMAL and ML3 use 1e-3 on weights near 1.
MAX_META_LEARNING_RATE = 10.0


@dataclass(frozen=True)
class FloatRange:
    """The values a real-valued field may take: `low` to `high`, each end included unless open."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        """The range in the words of an error message: "in [0, 1]", "positive and at most 100"."""
        if self.low == 0 and self.low_open and not self.high_open:
            return f"positive and at most {self.high:g}"
        if self.low_open and self.high_open:
            return f"strictly between {self.low:g} and {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


PROBABILITY = FloatRange(0.0, 1.0)
SHARE_OF_DATA = FloatRange(0.0, 1.0, low_open=True, high_open=True)  # some held out, some left to train on
POSITIVE_RATE = FloatRange(0.0, MAX_LEARNING_RATE, low_open=True)
POSITIVE_META_RATE = FloatRange(0.0, MAX_META_LEARNING_RATE, low_open=True)


@dataclass(frozen=True)
class Setting:
    """What one configuration field may be and how it is presented (see the module docstring)."""

    label: str = ""  # the form's label ("Population size"); empty: the field's name
    help: str = ""  # one sentence for the form and the reference
    at_least: int | None = None  # an integer's (or each list item's) least value
    at_least_why: str = ""  # added to the message: "must be at least 4 (CMA-ES needs two parents)"
    at_most: int | None = None  # an integer's (or a list's largest item's) largest value
    range: FloatRange | None = None  # a real number's values
    choices: tuple[str, ...] = ()  # a word's values
    choice_labels: tuple[str, ...] = ()  # how a form lists them (same order); empty: the values themselves
    reason: str = ""  # why the bound is where it is


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **facts: Any) -> Any:
    """A dataclass field with `Setting(**facts)` in its metadata."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"lfl": Setting(**facts)})


def setting_of(field: dataclasses.Field) -> Setting:
    return field.metadata.get("lfl", Setting())


def leaves(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """(dotted name, field, annotation) of every value field of dataclass `cls`, sections expanded."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from leaves(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, hints[f.name]


def facts(cls: type, dotted: str) -> tuple[Setting, Any, Any]:
    """(Setting, annotation, default) of field `dotted` of configuration class `cls` (KeyError if none)."""
    for name, f, annotation in leaves(cls):
        if name == dotted:
            return setting_of(f), annotation, value_at(cls(), dotted)
    raise KeyError(f"no configuration field {dotted!r}")


def value_at(config: Any, dotted: str) -> Any:
    """The value of `dotted` ("search.population_size") in a configuration object."""
    value = config
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


def range_errors(config: Any, reads=lambda dotted: True) -> dict[str, str]:
    """{dotted field: message} for every field of `config` outside what its Setting allows, e.g.
    {"training.lr": "must be positive and at most 100, got 1e+308"}; the first problem of a field.
    A field that `reads(dotted)` says the configuration's method ignores is held to its range, its
    largest value and its choices only (so nothing stored is unbounded), not to its least value."""
    errors: dict[str, str] = {}
    for dotted, f, _ in leaves(type(config)):
        problem = _problem(setting_of(f), value_at(config, dotted), reads(dotted))
        if problem:
            errors[dotted] = problem
    return errors


def _problem(s: Setting, value: Any, read: bool) -> str | None:
    if value is None:
        return None
    if s.range is not None and value not in s.range:
        return f"must be {s.range.describe()}, got {value}"
    if s.choices and value not in s.choices:
        return f"must be one of {', '.join(s.choices)}, got {value!r}"
    numbers = list(value) if isinstance(value, tuple) else [value] if isinstance(value, int) else []
    if read and s.at_least is not None and numbers and min(numbers) < s.at_least:
        why = f" ({s.at_least_why})" if s.at_least_why else ""
        return f"must be at least {s.at_least}{why}, got {value if not isinstance(value, tuple) else min(numbers)}"
    if s.at_most is not None and numbers and max(numbers) > s.at_most:
        return f"must be at most {s.at_most}, got {value if not isinstance(value, tuple) else max(numbers)}"
    return None


# ------------------------------------------------------------------ the reference page


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return f'"{value}"' if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def _allowed(s: Setting) -> str:
    if s.range is not None:
        return s.range.describe()
    if s.choices:
        return "one of " + ", ".join(f'"{c}"' for c in s.choices)
    parts = [f"at least {s.at_least}" if s.at_least is not None else "", f"at most {s.at_most:,}" if s.at_most else ""]
    return ", ".join(p for p in parts if p) or "-"


def reference_table(cls: type) -> str:
    """The Markdown table of every field of configuration class `cls`: default, allowed values, meaning."""
    defaults = cls()
    rows = ["| field | default | allowed | what it is (why the bound is where it is) |", "|---|---|---|---|"]
    for dotted, f, _ in leaves(cls):
        s = setting_of(f)
        meaning = s.help or s.label
        if s.reason:
            meaning = f"{meaning} ({s.reason})" if meaning else s.reason
        rows.append(f"| `{dotted}` | {_shown(value_at(defaults, dotted))} | {_allowed(s)} | {meaning} |")
    return "\n".join(rows)

