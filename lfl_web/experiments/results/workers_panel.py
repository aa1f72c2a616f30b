"""The dashboard's workers panel: the chunks of the generation a fanned-out search is evaluating,
who holds each and for how long (templates/experiments/_workers.html).

One query, whatever the search's length: the stored search's row joined to the chunks of its
current generation only (a LEFT JOIN, so a generation without chunks still names itself). An
experiment without a stored search (a method that runs in one task, or a search not prepared yet)
has no panel; a completed search shows its last generation's chunks (a second query, once finished). A worker taking a chunk sends no event, so while the experiment runs the panel carries
the address of its own fragment (`views.experiment_workers`) for the page to fetch again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from django.db.models import F, FilteredRelation, Q
from django.utils import timezone

from lfl_web.experiments.models import FINISHED_CHUNKS, Chunk, ChunkStatus, Experiment, Phase, StoredSearch

#: Seconds between two fetches of the panel while the experiment runs.
REFRESH_SECONDS = 3
#: The panel's status of a chunk its search ended without (a cancel, a failure): no worker will take it.
NOT_RUN = "not_run"
#: The columns read per chunk (never its outcomes).
CHUNK_FIELDS = ("number", "phase", "items", "status", "worker", "attempts", "started_at", "finished_at",
                "lease_until", "error")


@dataclass(frozen=True)
class ChunkRow:
    number: int
    phase: str
    candidates: str  # population indices, runs shortened: "0–2, 5"
    status: str
    worker: str
    attempts: int
    seconds: float | None  # running: so far; finished: how long its last attempt took
    lease_expired: bool
    error: str

    @property
    def worker_name(self) -> str:
        """The Celery node name before its host ("w1" of "w1@vm")."""
        return self.worker.split("@", 1)[0].split("#", 1)[0]

    @property
    def refines(self) -> bool:
        return self.phase == Phase.REFINE


@dataclass(frozen=True)
class WorkersView:
    generation: int
    rows: tuple[ChunkRow, ...]
    refreshes: bool  # whether the page should fetch the panel again (not once the experiment ended)

    refresh_seconds = REFRESH_SECONDS

    def count(self, status: str) -> int:
        return sum(row.status == status for row in self.rows)

    @property
    def done(self) -> int:
        return self.count(ChunkStatus.DONE)

    @property
    def failed(self) -> int:
        return self.count(ChunkStatus.FAILED)

    @property
    def running(self) -> int:
        return self.count(ChunkStatus.RUNNING)

    @property
    def waiting(self) -> int:
        return self.count(ChunkStatus.PENDING)

    @property
    def not_run(self) -> int:
        """Chunks the search ended without (none while it runs)."""
        return self.count(NOT_RUN)

    @property
    def workers(self) -> int:
        """How many workers hold a running chunk."""
        return len({row.worker for row in self.rows if row.status == ChunkStatus.RUNNING})

    @property
    def waiting_for_worker(self) -> bool:
        """Chunks wait and no worker holds one under a live lease: a worker was lost and its chunk
        waits to be sent again, or every worker is busy elsewhere (what the ETA says meanwhile)."""
        held = any(row.status == ChunkStatus.RUNNING and not row.lease_expired for row in self.rows)
        unfinished = any(row.status in (ChunkStatus.PENDING, ChunkStatus.RUNNING) for row in self.rows)
        return self.refreshes and unfinished and not held


def workers_view(experiment: Experiment, now: datetime | None = None) -> WorkersView | None:
    """The panel's data, or None when the experiment has no stored search (one query)."""
    now = now or timezone.now()
    current = FilteredRelation("experiment__chunks", condition=Q(experiment__chunks__generation=F("generation")))
    found = list(StoredSearch.objects.filter(experiment_id=experiment.pk).annotate(current_chunk=current)
                 .order_by("current_chunk__phase", "current_chunk__number")
                 .values_list("generation", *(f"current_chunk__{name}" for name in CHUNK_FIELDS)))
    if not found:
        return None
    rows = tuple(chunk_row(dict(zip(CHUNK_FIELDS, values[1:], strict=True)), now)
                 for values in found if values[1] is not None)  # None: the generation has no chunk
    generation = found[0][0]
    if not rows and experiment.is_finished and generation > 0:  # a completed search: its last generation's
        generation -= 1
        rows = tuple(chunk_row(chunk, now) for chunk in Chunk.objects.filter(
            experiment_id=experiment.pk, generation=generation).order_by("phase", "number").values(*CHUNK_FIELDS))
    if experiment.is_finished:  # what no worker finished stays undone: not "waiting", not "running"
        rows = tuple(map(ended_row, rows))
    return WorkersView(generation=generation, rows=rows, refreshes=not experiment.is_finished)


def ended_row(row: ChunkRow) -> ChunkRow:
    """A chunk as the panel of an ended search shows it: one no worker finished was not run."""
    if row.status in FINISHED_CHUNKS:
        return row
    return replace(row, status=NOT_RUN, seconds=None, lease_expired=False)


def chunk_row(chunk: dict, now: datetime) -> ChunkRow:
    status, started, finished = chunk["status"], chunk["started_at"], chunk["finished_at"]
    seconds = None
    if started is not None and status == ChunkStatus.RUNNING:
        seconds = max(0.0, (now - started).total_seconds())
    elif started is not None and finished is not None:
        seconds = max(0.0, (finished - started).total_seconds())
    lease = chunk["lease_until"]
    return ChunkRow(
        number=chunk["number"], phase=chunk["phase"], candidates=index_ranges(item["index"] for item in chunk["items"]),
        status=status, worker=chunk["worker"], attempts=chunk["attempts"], seconds=seconds,
        lease_expired=status == ChunkStatus.RUNNING and lease is not None and lease < now, error=chunk["error"])


def index_ranges(indices) -> str:
    """Population indices as runs: [0, 1, 2] -> "0–2", [4, 7] -> "4, 7", [0, 1, 5] -> "0, 1, 5"
    (a run of two stays two numbers)."""
    runs: list[list[int]] = []
    for index in sorted(set(indices)):
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ", ".join(f"{run[0]}–{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)) for run in runs)
