"""What the API receives: the JSON bodies of new experiments and transfers, and the query parameters
that pick and order lists. One definition serves both the checks and the OpenAPI document.

Bodies are strict (a JSON value of another type is refused, not converted; unknown fields are
refused); query parameters check themselves and say what they accept (an empty value means the
default). `http.field_message` turns their failures into the API's field-named messages.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from ninja import Path, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from lfl_web.experiments.models import DEFAULT_LEADERBOARD_SORT, LEADERBOARD_ORDERINGS
from search_engine.facade import EXPORT_FORMATS, METHODS

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
EXPERIMENT_SCOPES = ("all", "mine")
LEADERBOARD_RANKS = ("best", "all")
CONFIGURATION_DOC = "docs/configuration.md in the lfl repository"


class StrictBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class NewExperiment(StrictBody):
    """A search to start. Checked like the web form: nothing is stored when any field is wrong."""

    name: str = Field(description="Shown in lists and on the leaderboard (1 to 200 characters).")
    description: str = Field("", description="Free text shown on the experiment's page.")
    private: bool = Field(False, description="Only the owner (and staff) may see it.")
    config: dict[str, Any] = Field(
        description="The search configuration: sections such as task, search, training, local_search, "
                    "meta_test, each field optional ({} is every default). Its fields, defaults and limits are "
                    f"described in {CONFIGURATION_DOC}; a wrong field is reported under its dotted path, "
                    "e.g. 'search.crossover_rate'.")


class NewTransfer(StrictBody):
    """A meta-test of a learned loss on another task (a worker trains it and the baseline there)."""

    dataset: str = Field(description="The target task's data set (a catalogue name; not 'csv').")
    model: str = Field(description="The model trained on it.")
    data_root: str | None = Field(None, description="A folder on the server holding the data set's files (inside "
                                                    "the folders it allows); default: its own data folder.")
    seeds: int | None = Field(None, description="Paired seeds (at least 1); default: the source's meta-test's.")
    steps: int | None = Field(None, description="Training steps per model; default: the source's meta-test's.")


def choice(choices: tuple[str, ...], default: str | None, description: str):
    """A query parameter that must be one of `choices`; absent or empty, `default`."""

    def check(value):
        if value in ("", None):
            return default
        if value not in choices:
            raise PydanticCustomError("choice", "must be one of {choices}, got {value}",
                                      {"choices": ", ".join(choices), "value": repr(value)})
        return value

    kind = Literal[choices] if default is not None else Literal[choices] | None
    return Annotated[kind, BeforeValidator(check), Query(default, description=description)]


def check_limit(value):
    """How many to list: an integer from 1 to MAX_LIMIT; absent or empty, DEFAULT_LIMIT."""
    text = value if isinstance(value, str) else str(value)
    if not text:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise PydanticCustomError("limit", "must be an integer from 1 to {high}, got {value}",
                                  {"high": MAX_LIMIT, "value": repr(text)})
    return int(text)


def text_filter(description: str):
    return Annotated[str, Query("", description=description)]


Scope = choice(EXPERIMENT_SCOPES, "all", "all: every experiment you may see; mine: only yours.")
Sort = choice(tuple(LEADERBOARD_ORDERINGS), DEFAULT_LEADERBOARD_SORT,
              "meta_test (default): the losses with a held-out meta-test first, by meta_test_improvement, then "
              "the others by validation fitness; fitness: lowest first; improvement: largest first; date: newest first.")
Ranks = choice(LEADERBOARD_RANKS, "best", "best: each experiment's best loss; all: every one it kept.")
Method = choice(tuple(METHODS), None, "Only the losses this method learned.")
Dataset = text_filter("Only the losses learned on this data set (exact name).")
Model = text_filter("Only the losses learned with this model (exact name).")
Metric = text_filter("Only the losses whose fitness is this metric (exact name).")
Limit = Annotated[int, BeforeValidator(check_limit),
                  Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"At most this many (1 to {MAX_LIMIT}).")]
#: A download's format: documented as one of the export formats; any other is the view's 404.
ExportFormat = Annotated[str, WithJsonSchema({"type": "string", "enum": list(EXPORT_FORMATS)}),
                         Path(..., description="One of the export formats (any other is a 404).")]
