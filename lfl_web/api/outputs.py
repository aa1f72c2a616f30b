"""What the API sends: the shapes of its JSON answers, in the order of their keys.

payloads.py builds each answer as a dict; these models check it on the way out and give the
OpenAPI document its fields. Parts that are free-form JSON (a configuration, a meta-test record, a
network's weights) are typed as objects; everything else is named here. Numbers are kept as they
come (an integer stays an integer). Keys a model marks optional appear only where the answer has them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema, create_model

from search_engine.facade import EXPORT_FORMATS

Number = Annotated[int | float, WithJsonSchema({"type": "number"})]
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
JsonObject = dict[str, Any]


class ErrorBody(BaseModel):
    """One message: what went wrong."""

    error: str


class FieldErrors(BaseModel):
    """Messages by field: a body field ('name'), a configuration field by its dotted path
    ('search.crossover_rate'; the whole configuration as 'config') or a query parameter ('limit')."""

    errors: dict[str, str]


class ExperimentUrls(BaseModel):
    self: str = Field(description="This experiment in the API.")
    cancel: str = Field(description="POST here to stop it.")
    page: str = Field(description="Its page in the web application.")


class MetaTestPlan(BaseModel):
    seeds: int | None
    steps: int | None
    tune_lr: bool


class ExperimentSummary(BaseModel):
    """An experiment's row: who asked for what, and where it stands."""

    id: int
    name: str
    description: str
    owner: str = Field(description="The owner's username.")
    private: bool
    config: JsonObject = Field(description="The stored configuration, every default filled in.")
    status: str = Field(description="queued, running, succeeded, failed or cancelled.")
    cancel_requested: bool
    current_generation: int = Field(description="Generations completed.")
    total_generations: int
    baseline_loss: str
    baseline_fitness: Number | None
    metric: str = Field(description="What fitness measures (lower is better).")
    error: str
    evaluation_plan: JsonObject | None = Field(description="How the engine scores candidates, once started.")
    evaluation_label: str
    meta_test_status: str = Field(description="'' (not run), running, succeeded, failed or cancelled.")
    meta_test_error: str
    meta_test_seeds_done: int
    meta_test_plan: MetaTestPlan
    created_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    urls: ExperimentUrls


class WorkEstimate(BaseModel):
    """The training work the configuration asks for, at most (see docs/configuration.md#work-estimate)."""

    candidates: int
    models_trained: int
    fitness_steps: int
    rejection_steps: int
    local_search_steps: int
    meta_test_steps: int
    total_steps: int


class ExperimentCreated(ExperimentSummary):
    work_estimate: WorkEstimate


class ExperimentList(BaseModel):
    count: int = Field(description="How many there are in all (the list stops at `limit`).")
    experiments: list[ExperimentSummary]


class Generation(BaseModel):
    generation: int
    best_fitness: Number | None
    mean_fitness: Number | None
    median_fitness: Number | None
    evaluated: int
    rejected: int
    cache_hits: int
    best_expression: str | None
    best_latex: str | None
    hall_of_fame: list[Any]
    seconds: Number


class Candidate(BaseModel):
    generation: int
    index: int
    expression: str
    canonical_key: str
    latex: str
    fitness: Number | None = Field(description="None when rejected or diverged.")
    symbolic_fitness: Number | None
    rejection_reason: str | None
    cache_hit: bool
    weights: Any


class Verdict(BaseModel):
    """The meta-test in plain words, against the baseline at its own best learning rate."""

    code: str = Field(description="better, tie, worse or untested.")
    phrase: str
    sentence: str
    p_value: Number | None
    rescale: Number | None = Field(description="c where the loss's gradient is c times the baseline's.")


class Comparison(BaseModel):
    """One comparison of a meta-test: learned loss against baseline over paired seeds."""

    learned_lr: Number | None = Field(None, description="Only at tuned rates: the rate picked for the learned loss.")
    baseline_lr: Number | None = Field(None, description="Only at tuned rates: the rate picked for the baseline.")
    metric: str | None
    learned_mean: Number | None
    learned_std: Number | None
    baseline_mean: Number | None
    baseline_std: Number | None
    wins: int | None
    t_statistic: Number | None
    p_value: Number | None
    seeds: int
    relative_improvement: Number | None


#: A download's answer in the OpenAPI document: the file, of its format's content type.
FILE_ANSWER = {"description": "The file, as an attachment.", "content": {
    fmt.content_type.split(";")[0]: {"schema": {"type": "string", "format": "binary"}} for fmt in EXPORT_FORMATS.values()}}

#: The learned loss as a file: format -> URL, one for each export format.
Downloads = Annotated[dict[str, str], WithJsonSchema({
    "type": "object", "description": "The learned loss as a file: one URL per export format.",
    "properties": {name: {"type": "string", "description": fmt.description} for name, fmt in EXPORT_FORMATS.items()},
    "required": list(EXPORT_FORMATS)})]


#: A learned loss's fields after its id, in order (payloads.loss_entry).
LOSS_FIELDS: dict[str, Any] = {
    "verdict": (Verdict, ...),
    "tuned_comparison": (Comparison | None, Field(description="At each loss's own best learning rate.")),
    "fixed_rate_comparison": (Comparison | None, Field(description="At the search's learning rate.")),
    "experiment_id": (int, ...), "rank": (int, Field(description="1 is the experiment's best.")),
    "expression": (str, ...), "latex": (str, ...),
    "weights": (Any, Field(description="The expression's weights, where it has any.")),
    "network": (JsonObject | None, Field(description="A network loss: its architecture and weights.")),
    "method": (str, ...), "complexity": (int, ...), "validation_fitness": (Number, ...),
    "baseline_fitness": (Number | None, ...),
    "meta_test": (JsonObject | None, Field(description="The whole meta-test record.")),
    "generation": (int, ...), "dataset": (str, ...), "model": (str, ...), "metric": (str, ...),
    "improvement": (Number | None, Field(description="Baseline fitness minus fitness (positive is better).")),
    "relative_improvement": (Number | None, ...),
    "experiment_name": (str, ...), "author": (str, ...), "created_at": (Timestamp, ...),
    "downloads": (Downloads, ...), "experiment_url": (str, ...),
}

LearnedLossEntry = create_model("LearnedLossEntry", __doc__="A learned loss, its meta-test first.",
                                id=(int, ...), **LOSS_FIELDS)
LeaderboardEntry = create_model(
    "LeaderboardEntry", __doc__="A leaderboard row: what it is ranked by, then the learned loss.",
    id=(int, ...),
    meta_test_improvement=(Number | None, Field(description="The relative drop of the mean test metric the "
                                                            "ranking uses; None: not meta-tested.")),
    meta_test_improvement_basis=(str | None, Field(description="tuned or search_rate; None: not meta-tested.")),
    meta_test_improvement_at_search_rate=(Number | None, ...),
    **LOSS_FIELDS, method_label=(str, ...))


class ExperimentDetail(BaseModel):
    """An experiment with its generations, the newest generation's candidates and its learned losses."""

    experiment: ExperimentSummary
    generations: list[Generation]
    candidates: list[Candidate]
    learned_losses: list[LearnedLossEntry]


class Leaderboard(BaseModel):
    count: int
    sort: str
    losses: list[LeaderboardEntry]


class TransferEntry(BaseModel):
    """A learned loss meta-tested on another task."""

    id: int
    learned_loss: int
    dataset: str
    model: str
    verdict: Verdict | None = Field(description="None before the run has succeeded.")
    improvement: Number | None
    improvement_basis: str | None = Field(description="tuned or search_rate; None without a record.")
    improvement_at_search_rate: Number | None
    data_root: str | None
    status: str = Field(description="queued, running, succeeded or failed.")
    seeds: int
    steps: int
    seeds_done: int
    record: JsonObject | None = Field(description="The meta-test record of the latest success.")
    error: str | None
    created_at: Timestamp | None
    finished_at: Timestamp | None
    url: str
    loss_url: str


class TransferList(BaseModel):
    learned_loss: int
    transfers: list[TransferEntry]


class TransferAccepted(BaseModel):
    id: int
    status: str
    url: str = Field(description="Where to follow it (also the Location header).")


class PresetEntry(BaseModel):
    """A configuration the new-experiment form starts from (a file in the server's configs/)."""

    key: str = Field(description="The preset's name (its file's stem), e.g. 'quick'.")
    label: str = Field(description="What it sets up: method, data set and model.")
    config: JsonObject = Field(description="The whole configuration, defaults filled in (docs/configuration.md).")


class PresetList(BaseModel):
    presets: list[PresetEntry]
