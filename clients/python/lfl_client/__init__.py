"""lfl_client: drive an lfl server from Python (see `Client`)."""

from lfl_client.client import FORMATS, OPERATIONS, Client
from lfl_client.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    LflError,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    Timeout,
    TooManyRequests,
)
from lfl_client.frames import to_frame
from lfl_client.types import (
    Comparison,
    Experiment,
    ExperimentDetail,
    Generation,
    LeaderboardEntry,
    LearnedLoss,
    Transfer,
    Verdict,
)

__all__ = [
    "FORMATS", "OPERATIONS", "AuthenticationFailed", "Client", "Comparison", "Conflict", "Experiment",
    "ExperimentDetail", "Generation", "InvalidRequest", "LeaderboardEntry", "LearnedLoss", "LflError", "NotFound",
    "PermissionDenied", "ServiceUnavailable", "Timeout", "TooManyRequests", "Transfer", "Verdict", "to_frame",
]
