"""The Pareto front of a symbolic search: expression size against fitness, both minimized.

Every distinct loss a search evaluated (one point per canonical key, at its best fitness) is a point;
the points no other point beats in both size and fitness form the front, the simplest losses for
each level of fitness. The dashboard draws them as an inline SVG computed here (`pareto_chart`), so
the page, its live updates and the results endpoint show the same markup and the browser draws
nothing itself.

Cost: one ordered query over the experiment's evaluated candidates (`candidate_rows`); a row is
tokenized only when it can be the best of its key, and at most `DOMINATED_LIMIT` points off the
front are plotted, so the markup stays small however long the search runs. A generation's live
update reads only the rows it adds (`RunningFronts`), so its cost does not grow with the history. A
loss's size is the engine's node count of its prefix text (`tree.prefix_size`: neither torch nor
SymPy is loaded).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from search_engine.facade import catalog, prefix_size

#: Methods whose losses are expressions (ML3's are networks: they have no size to plot).
SYMBOLIC_METHODS = frozenset(m.name for m in catalog.METHODS.values() if m.symbolic)
#: The method of a configuration that names none (the engine's default).
DEFAULT_METHOD = "evomal"
#: How many points off the front are plotted at most (the best by fitness): enough to show the cloud
#: near the front, few enough that the chart, sent to every viewer with each generation, stays near
#: 55 kB and 10 ms to render however long the search runs (500: 110 kB and 25 ms).
DOMINATED_LIMIT = 200
#: Fitness is drawn on a log scale when its values are all positive and span at least this ratio
#: (a linear axis would squash every good loss into one line at the bottom).
LOG_RATIO = 20.0


def expression_size(expression: str) -> int:
    """Number of nodes of a prefix string such as ``mul(-1, mul(y, log(f)))`` (6): the engine's
    `Node.size` of its tree, counted without building it (`tree.prefix_size`)."""
    return prefix_size(expression or "")


@dataclass(frozen=True)
class ParetoPoint:
    """One distinct loss: its best evaluation."""

    canonical_key: str
    expression: str  # prefix string
    latex: str
    fitness: float  # lower is better
    size: int  # nodes of the expression tree
    generation: int  # of the evaluation that gave this fitness


@dataclass(frozen=True)
class ParetoView:
    """The points to draw: the front (simplest first) and the best others (best fitness first)."""

    front: tuple[ParetoPoint, ...]
    dominated: tuple[ParetoPoint, ...]
    omitted: int  # dominated points left out by the limit

    @property
    def distinct(self) -> int:
        """How many distinct losses have a fitness (drawn or not)."""
        return len(self.front) + len(self.dominated) + self.omitted


def best_per_key(rows: Iterable[tuple]) -> list[ParetoPoint]:
    """One point per canonical key: its lowest finite fitness, then the smallest expression, then the
    earliest generation. `rows` are (canonical_key, expression, latex, fitness, generation); rows
    without a finite fitness (rejected, diverged) are skipped."""
    best: dict[str, ParetoPoint] = {}
    for key, expression, latex, fitness, generation in rows:
        if fitness is None or not math.isfinite(fitness):
            continue
        held = best.get(key)
        if held is not None and fitness > held.fitness:  # the common case, ordered rows: no tokenizing
            continue
        point = ParetoPoint(key, expression, latex or "", float(fitness), expression_size(expression), generation)
        if held is None or (point.fitness, point.size, point.generation) < (held.fitness, held.size, held.generation):
            best[key] = point
    return list(best.values())


def split_front(points: Iterable[ParetoPoint]) -> tuple[list[ParetoPoint], list[ParetoPoint]]:
    """(front, dominated): the front is every point that no other beats in both size and fitness
    (smaller or equal in both, smaller in one), simplest first; points equal in both are all on it.
    The dominated points come best fitness first."""
    ordered = sorted(points, key=lambda p: (p.fitness, p.size, p.canonical_key))
    front, dominated = [], []
    smallest, fitness_of_smallest = math.inf, None
    for point in ordered:  # every point that could dominate this one came before it
        if point.size < smallest:
            smallest, fitness_of_smallest = point.size, point.fitness
            front.append(point)
        elif point.size == smallest and point.fitness == fitness_of_smallest:
            front.append(point)  # a tie with a front point: neither beats the other
        else:
            dominated.append(point)
    front.sort(key=lambda p: (p.size, p.fitness, p.canonical_key))
    return front, dominated


def pareto_view(rows: Iterable[tuple], limit: int = DOMINATED_LIMIT) -> ParetoView:
    """The front and at most `limit` of the best dominated points of candidate `rows` (see best_per_key)."""
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    front, dominated = split_front(best_per_key(rows))
    return ParetoView(tuple(front), tuple(dominated[:limit]), max(0, len(dominated) - limit))


def rank(point: ParetoPoint) -> tuple:
    """The order of the points off the front (split_front's): best fitness, then smallest, then key."""
    return point.fitness, point.size, point.canonical_key


class RunningFront:
    """The view of one experiment's candidates, brought up to date from the rows it has not read yet.

    Rows of a finished generation do not change (a redelivered event saves the same values; a resumed
    search that redoes generations first sends search_started, which drops the front: RunningFronts).
    Kept: each key's best (fitness, size, generation), the front, and every dominated point that ranks
    before `threshold` (at most `limit + spare` of them); the points left out all rank after it. A new
    row can only improve its key with a point at least as small and as fit, so a point left out stays
    dominated and ranked after the threshold: it is needed again only when fewer than `limit` kept points
    rank before it, or when a key comes back larger (two expressions with one canonical key). Then
    `absorb` refuses, and the caller starts a new front from every row.
    """

    def __init__(self, limit: int = DOMINATED_LIMIT, spare: int | None = None):
        self.limit = limit
        self.spare = limit if spare is None else spare  # room for kept points that move onto the front
        self.read_through = -1  # every row of the generations up to this one has been taken in
        self._best: dict[str, tuple[float, int, int]] = {}
        self._kept: dict[str, ParetoPoint] = {}
        self._threshold: tuple | None = None  # None: nothing left out
        self._view = ParetoView((), (), 0)

    def absorb(self, rows: Iterable[tuple], finished: int) -> bool:
        """Take in the rows of generations read_through + 1 .. `finished` for good; False (nothing
        changed) if they cannot be merged: the caller then starts a new front from every row."""
        merged = self._merge(rows)
        if merged is None:
            return False
        changes, self._kept, self._threshold, self._view = merged
        self._best.update(changes)
        self.read_through = max(self.read_through, finished)
        return True

    def view_with(self, rows: Iterable[tuple] = ()) -> ParetoView | None:
        """The view with `rows` shown but not kept (a generation still being evaluated); None if they
        cannot be merged (see absorb)."""
        merged = self._merge(rows)
        return None if merged is None else merged[3]

    def _merge(self, rows: Iterable[tuple]):
        changes, kept = {}, dict(self._kept)
        for point in best_per_key(rows):
            held = self._best.get(point.canonical_key)
            if held is not None and (point.fitness, point.size, point.generation) >= held:
                continue
            if held is not None and point.size > held[1]:
                return None  # the key's old point may have been what kept a left-out point dominated
            changes[point.canonical_key] = (point.fitness, point.size, point.generation)
            kept[point.canonical_key] = point
        if not changes:
            return changes, self._kept, self._threshold, self._view
        front, dominated = split_front(kept.values())
        threshold = self._threshold
        known = dominated if threshold is None else [p for p in dominated if rank(p) < threshold]
        distinct = len(self._best) + sum(key not in self._best for key in changes)
        if len(known) < self.limit and distinct > len(front) + len(known):
            return None  # a point left out would be drawn now
        room = self.limit + self.spare
        if len(known) > room:
            threshold = rank(known[room]) if threshold is None else min(threshold, rank(known[room]))
        drawn = known[:self.limit]
        view = ParetoView(tuple(front), tuple(drawn), distinct - len(front) - len(drawn))
        return changes, {p.canonical_key: p for p in (*front, *known[:room])}, threshold, view


class RunningFronts:
    """The running fronts of the experiments whose generations this process announces (the newest
    few), so that a generation's chart reads that generation's rows, not the whole history."""

    def __init__(self, size: int = 16):
        self.size = size
        self._fronts: OrderedDict[tuple, RunningFront] = OrderedDict()
        self._lock = threading.Lock()

    def view(self, experiment, limit: int = DOMINATED_LIMIT) -> ParetoView:
        """What pareto_view of every candidate row gives, reading the rows of the generations not yet
        taken in (one query): those up to the newest finished generation are kept for next time."""
        finished = experiment.current_generation - 1
        identity = (experiment.pk, experiment.created_at)  # a pk may come back in a new database
        with self._lock:
            front = self._fronts.pop(identity, None)
            if front is None or front.limit != limit or front.read_through > finished:  # new, or went back
                front = RunningFront(limit)
            rows = list(candidate_rows(experiment).filter(generation__gt=front.read_through))
            if not front.absorb([r for r in rows if r[4] <= finished], finished):
                front, rows = RunningFront(limit), list(candidate_rows(experiment))
                front.absorb([r for r in rows if r[4] <= finished], finished)  # from nothing: always merges
            view = front.view_with([r for r in rows if r[4] > finished])
            self._fronts[identity] = front
            while len(self._fronts) > self.size:
                self._fronts.popitem(last=False)
        return view if view is not None else pareto_view(candidate_rows(experiment), limit)

    def forget(self, experiment_id: int, generation: int | None = None) -> None:
        """Drop the experiment's front (only if it has taken in `generation`, when given): its search
        restarted, or a row it read was saved again."""
        with self._lock:
            for identity in [i for i in self._fronts if i[0] == experiment_id]:
                if generation is None or self._fronts[identity].read_through >= generation:
                    del self._fronts[identity]


#: This process's running fronts (used for the chart of a generation_finished update).
RUNNING_FRONTS = RunningFronts()


def is_symbolic(experiment) -> bool:
    """Whether the experiment's method learns expressions (a configuration without one is EvoMAL)."""
    return (experiment.config or {}).get("method", DEFAULT_METHOD) in SYMBOLIC_METHODS


def candidate_rows(experiment):
    """The one query behind the chart: every evaluated candidate with a fitness, best first (so each
    key's first row is its best), as (canonical_key, expression, latex, fitness, generation)."""
    return (experiment.candidates.filter(fitness__isnull=False).order_by("fitness", "generation", "index")
            .values_list("canonical_key", "expression", "latex", "fitness", "generation"))


# ----------------------------------------------------------------------------- the SVG's geometry

#: The viewBox and the plot's margins (room for tick labels and axis titles), in SVG units.
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 62, 16, 28, 42


@dataclass(frozen=True)
class Scale:
    """Data values in [lo, hi] to SVG coordinates in [start, end], linearly or in log10."""

    lo: float
    hi: float
    start: float
    end: float
    log: bool = False

    def _value(self, v: float) -> float:
        return math.log10(v) if self.log else v

    def __call__(self, v: float) -> float:
        lo, hi = self._value(self.lo), self._value(self.hi)
        return round(self.start + (self._value(v) - lo) / (hi - lo) * (self.end - self.start), 1)


@dataclass(frozen=True)
class Tick:
    at: float  # SVG coordinate
    label: str


@dataclass(frozen=True)
class PlottedPoint:
    loss: ParetoPoint
    x: float
    y: float


@dataclass(frozen=True)
class ParetoChart:
    """Everything the partial draws: points in SVG coordinates, ticks, the front's step line."""

    view: ParetoView
    front: tuple[PlottedPoint, ...]
    dominated: tuple[PlottedPoint, ...]
    front_path: str  # SVG path "M x,y H x V y ...": the front as a staircase
    size_ticks: tuple[Tick, ...]
    fitness_ticks: tuple[Tick, ...]
    log_fitness: bool
    baseline_y: float | None  # the baseline's fitness as a horizontal line, if known
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    right: int = WIDTH - RIGHT
    bottom: int = HEIGHT - BOTTOM

    @property
    def plot_width(self) -> int:
        return self.right - self.left

    @property
    def plot_height(self) -> int:
        return self.bottom - self.top

    @property
    def empty(self) -> bool:
        return not self.front


def nice_ticks(lo: float, hi: float, count: int, integer: bool = False) -> list[float]:
    """About `count` round values in [lo, hi], 1, 2 or 5 times a power of ten apart."""
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    if integer:
        step = max(1, round(step))
    first = math.ceil(lo / step - 1e-9)
    return [float(f"{k * step:.12g}") for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten in [lo, hi]; with 1, 2 and 5 times them when fewer than three powers fit."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    powers = [10.0 ** k for k in decades if lo <= 10.0 ** k <= hi]
    if len(powers) >= 3:
        return powers
    return [float(f"{m * 10.0 ** k:.12g}") for k in decades for m in (1, 2, 5) if lo <= m * 10.0 ** k <= hi]


def tick_label(value: float) -> str:
    """A short axis label: 0, 0.25, 12, 1e-05."""
    if value == 0:
        return "0"
    return f"{value:.0e}" if abs(value) >= 1e4 or abs(value) < 1e-3 else f"{value:.4g}"


def fitness_scale(values: list[float]) -> Scale:
    """The y axis: log10 when the values are positive and spread widely, else linear; padded so no
    point sits on the frame (a linear axis of values >= 0, such as error rates, stops at 0)."""
    lo, hi = min(values), max(values)
    log = lo > 0 and hi / lo >= LOG_RATIO
    if log:
        pad = (math.log10(hi) - math.log10(lo)) * 0.06
        lo, hi = lo / 10 ** pad, hi * 10 ** pad
    else:
        pad = (hi - lo) * 0.08 or abs(lo) * 0.1 or 1.0
        lo, hi = (max(lo - pad, 0.0) if lo >= 0 else lo - pad), hi + pad
    return Scale(lo, hi, HEIGHT - BOTTOM, TOP, log)  # lower (better) fitness at the bottom


def staircase(points: list[PlottedPoint]) -> str:
    """The front, simplest first, as steps: across to the next size, then down to its fitness."""
    if not points:
        return ""
    path = [f"M{points[0].x},{points[0].y}"]
    path += [f"H{p.x}V{p.y}" for p in points[1:]]
    return "".join(path)


def pareto_chart(view: ParetoView, baseline_fitness: float | None = None) -> ParetoChart:
    """The view in SVG coordinates (the baseline's fitness, if given, is drawn and kept in range)."""
    points = view.front + view.dominated
    if baseline_fitness is not None and not math.isfinite(baseline_fitness):
        baseline_fitness = None
    if not points:
        return ParetoChart(view, (), (), "", (), (), False, None)
    sizes = [p.size for p in points]
    xs = Scale(max(min(sizes) - 1, 0), max(sizes) + 1, LEFT, WIDTH - RIGHT)
    ys = fitness_scale([p.fitness for p in points] + ([baseline_fitness] if baseline_fitness is not None else []))
    front = tuple(PlottedPoint(p, xs(p.size), ys(p.fitness)) for p in view.front)
    dominated = tuple(PlottedPoint(p, xs(p.size), ys(p.fitness)) for p in view.dominated)
    size_values = nice_ticks(xs.lo, xs.hi, 6, integer=True)
    fitness_values = log_ticks(ys.lo, ys.hi) if ys.log else nice_ticks(ys.lo, ys.hi, 5)
    return ParetoChart(
        view, front, dominated, staircase(list(front)),
        tuple(Tick(xs(v), tick_label(v)) for v in size_values),
        tuple(Tick(ys(v), tick_label(v)) for v in fitness_values),
        ys.log, ys(baseline_fitness) if baseline_fitness is not None else None,
    )


def experiment_chart(experiment, limit: int = DOMINATED_LIMIT, running: bool = False) -> ParetoChart | None:
    """The chart of a symbolic experiment, read with one query (from RUNNING_FRONTS if `running`: only
    the rows not read before); None for a network method (ML3)."""
    if not is_symbolic(experiment):
        return None
    view = RUNNING_FRONTS.view(experiment, limit) if running else pareto_view(candidate_rows(experiment), limit)
    return pareto_chart(view, experiment.baseline_fitness)
