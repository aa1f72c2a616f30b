"""Experiments and what their searches found: generations, candidates and learned losses.

The database is the record of a search: a worker writes every event here before announcing it,
and a browser that (re)connects gets its panels rendered from here (`results.dashboard`).
"""

from lfl_web.experiments.models.experiment import (
    UNFINISHED,
    Experiment,
    ExperimentQuerySet,
    MetaTestStatus,
    Status,
)
from lfl_web.experiments.models.findings import (
    DEFAULT_LEADERBOARD_SORT,
    LEADERBOARD_ORDERINGS,
    Candidate,
    CandidateQuerySet,
    Generation,
    LearnedLoss,
    LearnedLossQuerySet,
)
from lfl_web.experiments.models.stored_search import FINISHED_CHUNKS, Chunk, ChunkStatus, Phase, StoredSearch
from lfl_web.experiments.models.transfer_run import UNFINISHED_TRANSFERS, TransferRun, TransferStatus

__all__ = (
    "DEFAULT_LEADERBOARD_SORT", "FINISHED_CHUNKS", "LEADERBOARD_ORDERINGS", "UNFINISHED", "Candidate", "Chunk", "ChunkStatus", "CandidateQuerySet", "Experiment", "ExperimentQuerySet",
    "Generation", "LearnedLoss", "LearnedLossQuerySet", "MetaTestStatus", "Phase", "Status", "StoredSearch",
    "TransferRun", "TransferStatus", "UNFINISHED_TRANSFERS",
)
