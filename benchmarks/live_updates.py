"""Live updates: the delay from a generation's commit to its receipt by every websocket viewer.

    python -m benchmarks.live_updates                   # 50 generations of 25, 100 viewers (a few minutes)
    python -m benchmarks.live_updates --smoke           # 3 generations, 5 viewers

The embedded stack, in real processes: a temporary SQLite database (LFL_VAR_DIR in a temporary
folder, migrated), the embedded Redis as channel layer, a real daphne serving lfl_web.asgi, and
`--viewers` websocket-client connections (one thread each, signed in with a session cookie; the
library comes with selenium, requirements-dev.txt). This process plays the worker: it feeds
synthetic engine events (search_engine.evolution.events: `--population` candidate_evaluated, then
generation_finished with a hall of fame of 10) to record_event, no training involved.

Delay: from the commit of the event's rows (stamped by transaction.on_commit from a wrapper around
record_event's saver) to a viewer's receipt of the text frame, on this process's monotonic clock.
Every event waits until all viewers have it (or DEADLINE_SECONDS passed) before the next is fed, so
events do not queue behind each other. Drops: (viewer, event) pairs of a generation, its
candidates and itself, that never arrived. One row per generation: the generation event's delay,
its publish time (commit to record_event's return: rendering and group_send), its message size.
Exits 1 on any drop; the target (p95 < 300 ms at every generation) is reported, not enforced.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_P95_MS = 300.0
DEADLINE_SECONDS = 30.0  # the longest an event may take to reach every viewer before it counts as dropped
HALL_OF_FAME = 10
HEAD = re.compile(r'\{"type": "(\w+)"(?:, "generation": (\d+))?(?:, "index": (\d+))?')

# ----------------------------------------------------------------------------- synthetic search

BINARY = {"add": "{} + {}", "sub": "{} - {}", "mul": r"{} \cdot {}", "div": r"\frac{{{}}}{{{}}}"}
UNARY = {"log": r"\log({})", "sqrt": r"\sqrt{{{}}}", "square": "({})^2", "abs": "|{}|", "exp": "e^{{{}}}"}
TERMINALS = ("y", "f", "1", "-1", "2", "0.5")


def random_tree(rng: random.Random, depth: int, root: bool = True) -> tuple[str, str]:
    """A random expression, never a lone terminal: (prefix string, LaTeX)."""
    if depth <= 0 or (not root and rng.random() < 0.2):
        leaf = rng.choice(TERMINALS)
        return leaf, leaf
    if rng.random() < 0.4:
        name = rng.choice(list(UNARY))
        inner, latex = random_tree(rng, depth - 1, False)
        return f"{name}({inner})", UNARY[name].format(latex)
    name = rng.choice(list(BINARY))
    (a, la), (b, lb) = random_tree(rng, depth - 1, False), random_tree(rng, depth - 1, False)
    return f"{name}({a}, {b})", BINARY[name].format(la, lb)


class SyntheticSearch:
    """Engine events of an EvoMAL-like search: mostly new losses, some cache hits, some rejected."""

    def __init__(self, population: int, generations: int, seed: int = 0):
        self.rng, self.population, self.generations = random.Random(seed), population, generations
        self.seen: dict[str, tuple] = {}  # canonical key -> (expression, latex, fitness, size, generation, weights)

    def started(self):
        from search_engine.evolution.events import SearchStarted

        return SearchStarted(config={}, generations=self.generations, population_size=self.population,
                             start_generation=0, baseline_loss="cross_entropy", baseline_fitness=0.3)

    def candidates(self, generation: int) -> list:
        from lfl_web.experiments.results.pareto import expression_size
        from search_engine.evolution.events import CandidateEvaluated

        rng, events = self.rng, []
        for index in range(self.population):
            if self.seen and rng.random() < 0.2:  # the equivalence cache: a loss seen before
                key = rng.choice(list(self.seen))
                expression, latex, fitness, _, _, weights = self.seen[key]
                events.append(CandidateEvaluated(generation, index, expression, key, latex, fitness, None, True,
                                                 weights))
                continue
            expression, latex = random_tree(rng, rng.randint(2, 5))
            size = expression_size(expression)
            weights = tuple(round(rng.uniform(0.5, 1.5), 4) for _ in range(size))
            if rng.random() < 0.1:
                events.append(CandidateEvaluated(generation, index, expression, expression, latex, None,
                                                 "not decreasing in f", False, None))
                continue
            # later generations and larger losses do better, on average: the front has a few steps
            progress = 1 - 0.5 * generation / self.generations
            fitness = round(0.3 * progress * (1 - 0.025 * min(size, 20)) * rng.uniform(0.7, 1.3), 5)
            self.seen.setdefault(expression, (expression, latex, fitness, size, generation, weights))
            events.append(CandidateEvaluated(generation, index, expression, expression, latex, fitness, None, False,
                                             weights))
        return events

    def finished(self, generation: int, candidates: list):
        from search_engine.evolution.events import GenerationFinished, HallOfFameEntry

        scored = sorted(c.fitness for c in candidates if c.fitness is not None)
        best = min((c for c in candidates if c.fitness is not None), key=lambda c: c.fitness, default=None)
        top = sorted(self.seen.items(), key=lambda item: item[1][2])[:HALL_OF_FAME]
        hall = tuple(HallOfFameEntry(e, k, lx, fit, size, gen, w) for k, (e, lx, fit, size, gen, w) in top)
        return GenerationFinished(
            generation=generation, best_fitness=best.fitness if best else None,
            mean_fitness=statistics.fmean(scored) if scored else None,
            median_fitness=statistics.median(scored) if scored else None, evaluated=len(candidates),
            rejected=sum(c.rejection_reason is not None for c in candidates),
            cache_hits=sum(c.cache_hit for c in candidates), best_expression=best.expression if best else None,
            best_latex=best.latex if best else None, hall_of_fame=hall, seconds=round(self.rng.uniform(30, 60), 2))


# ----------------------------------------------------------------------------- viewers


class Receipts:
    """When each viewer received each event, keyed by (type, generation, index)."""

    def __init__(self):
        self.times: dict[tuple, dict[int, float]] = {}
        self.sizes: dict[tuple, int] = {}
        self.changed = threading.Condition()

    def add(self, viewer: int, key: tuple, at: float, size: int) -> None:
        with self.changed:
            self.times.setdefault(key, {}).setdefault(viewer, at)
            self.sizes.setdefault(key, size)
            self.changed.notify_all()

    def wait_for(self, key: tuple, count: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self.changed:
            while len(self.times.get(key, ())) < count and time.monotonic() < deadline:
                self.changed.wait(deadline - time.monotonic())


class Viewer(threading.Thread):
    """One browser: connects, takes the snapshot, stamps every event it receives until the search ends."""

    def __init__(self, number: int, url: str, origin: str, cookie: str, receipts: Receipts):
        super().__init__(daemon=True, name=f"viewer-{number}")
        self.number, self.url, self.origin, self.cookie, self.receipts = number, url, origin, cookie, receipts
        self.ready, self.error, self.socket = threading.Event(), None, None

    def run(self) -> None:
        import websocket

        try:
            self.socket = websocket.create_connection(self.url, timeout=DEADLINE_SECONDS, origin=self.origin,
                                                      cookie=self.cookie, skip_utf8_validation=True)
            # No timeout: one in the middle of a frame would lose the stream. UTF-8 is still checked by
            # str.decode (in C), not byte by byte in Python, which would make this client the bottleneck.
            self.socket.settimeout(None)
            while True:
                text = self.socket.recv()
                at = time.monotonic()
                if not isinstance(text, str) or not text:
                    raise ConnectionError("the server closed the socket")
                kind, generation, index = HEAD.match(text).groups()
                if kind == "snapshot":
                    self.ready.set()
                    continue
                key = (kind, int(generation) if generation else None, int(index) if index else None)
                self.receipts.add(self.number, key, at, len(text.encode()))
                if kind == "experiment_status" and json.loads(text)["experiment"]["status"] != "running":
                    return
        except Exception as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.ready.set()
            if self.socket is not None:
                with contextlib.suppress(Exception):
                    self.socket.close()


# ----------------------------------------------------------------------------- the stack


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"daphne did not listen on port {port} within {seconds:g} s")


@contextlib.contextmanager
def embedded_stack(folder: Path):
    """Redis, a migrated SQLite database and daphne; yields the daphne port. Django is set up here."""
    from lfl_web.redis_server import EmbeddedRedis, free_port

    with EmbeddedRedis() as redis_server:
        for name in ("DATABASE_URL", "LFL_TEST_DATABASE_URL"):
            os.environ.pop(name, None)
        os.environ.update({"DJANGO_SETTINGS_MODULE": "lfl_web.settings", "LFL_VAR_DIR": str(folder),
                           "REDIS_URL": redis_server.url, "LFL_CHANNEL_LAYER": "redis", "LFL_DEBUG": "0"})
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        port = free_port()
        with (folder / "daphne.log").open("w") as log:
            daphne = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                       "lfl_web.asgi:application"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            wait_for_port(port, daphne)
            yield port
        finally:
            daphne.terminate()
            try:
                daphne.wait(10)
            except subprocess.TimeoutExpired:
                daphne.kill()
                daphne.wait()


@contextlib.contextmanager
def commit_stamps(stamps: dict):
    """Record the moment each event's rows are committed: record_event's savers, wrapped to register an
    on_commit callback (record_event itself is unchanged)."""
    from django.db import transaction

    from lfl_web.experiments.live import recording

    original = recording.SAVERS

    def stamped(save):
        def save_and_stamp(experiment_id, data):
            save(experiment_id, data)
            key = (data["type"], data.get("generation"), data.get("index"))
            transaction.on_commit(lambda: stamps.__setitem__(key, time.monotonic()))
        return save_and_stamp

    recording.SAVERS = {kind: stamped(save) for kind, save in original.items()}
    try:
        yield
    finally:
        recording.SAVERS = original


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def run(generations: int, viewers: int, population: int) -> tuple[list[dict], int]:
    """Feed a search to `viewers` watchers; one dict per generation and the count of viewers that failed."""
    with tempfile.TemporaryDirectory(prefix="lfl-live-") as tmp, embedded_stack(Path(tmp)) as port:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from lfl_web.experiments.live.recording import record_event
        from lfl_web.experiments.models import Experiment

        user = get_user_model().objects.create_user("viewer", password="a-long-benchmark-password")
        client = Client()
        client.force_login(user)
        cookie = f"sessionid={client.cookies['sessionid'].value}"
        config = {"task": {"dataset": "digits", "model": "mlp"}, "local_search": {"mode": "all"}}
        experiment = Experiment.objects.create(owner=user, name="live updates", config=config,
                                               total_generations=generations)
        experiment.claim_for_worker("benchmark")
        receipts, stamps = Receipts(), {}
        watchers = [Viewer(n, f"ws://127.0.0.1:{port}/ws/experiments/{experiment.pk}/", f"http://127.0.0.1:{port}",
                           cookie, receipts) for n in range(viewers)]
        for watcher in watchers:
            watcher.start()
        for watcher in watchers:
            watcher.ready.wait(DEADLINE_SECONDS)
        failed = [w for w in watchers if w.error is not None or not w.ready.is_set()]
        if failed:
            raise RuntimeError(f"{len(failed)} viewers could not connect: {failed[0].error!r}")
        search, rows = SyntheticSearch(population, generations), []

        def feed(event) -> tuple[tuple, float]:
            record_event(experiment.pk, event)
            returned = time.monotonic()
            data = event.to_dict()
            key = (data["type"], data.get("generation"), data.get("index"))
            receipts.wait_for(key, viewers, DEADLINE_SECONDS)
            return key, returned

        with commit_stamps(stamps):
            feed(search.started())
            for generation in range(generations):
                candidates = search.candidates(generation)
                keys = [feed(candidate)[0] for candidate in candidates]
                key, returned = feed(search.finished(generation, candidates))
                delays = [(at - stamps[key]) * 1000 for at in receipts.times.get(key, {}).values()]
                drops = sum(viewers - len(receipts.times.get(k, ())) for k in [*keys, key])
                rows.append({"generation": generation, "delays": delays, "drops": drops,
                             "publish_ms": (returned - stamps[key]) * 1000, "bytes": receipts.sizes.get(key, 0)})
            record_event(experiment.pk, {"type": "search_finished", "status": "completed",
                                         "generations_completed": generations, "best": None, "evaluated": 0,
                                         "rejected": 0, "cache_hits": 0})
        deadline = time.monotonic() + DEADLINE_SECONDS  # for the final status to reach every viewer
        for watcher in watchers:
            watcher.join(max(0.0, deadline - time.monotonic()))
        return rows, sum(w.error is not None or w.is_alive() for w in watchers)


def print_report(rows: list[dict], viewers: int, broken: int) -> bool:
    """The table and the summary line; True when the target is met with no drop."""
    print("| generation | p50 ms | p95 ms | max ms | drops | publish ms | message KiB |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for row in rows:
        delays = row["delays"] or [float("inf")]
        p95 = percentile(delays, 0.95)
        worst = max(worst, p95)
        print(f"| {row['generation']} | {percentile(delays, 0.5):.0f} | {p95:.0f} | {max(delays):.0f} | {row['drops']} "
              f"| {row['publish_ms']:.0f} | {row['bytes'] / 1024:.1f} |")
    drops = sum(row["drops"] for row in rows)
    met = worst < TARGET_P95_MS and drops == 0
    print(f"worst p95 {worst:.0f} ms; total drops {drops}; viewers lost {broken} of {viewers}; "
          f"target (p95 < {TARGET_P95_MS:.0f} ms at every generation, zero drops) met: {'yes' if met else 'no'}")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, default=50)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--population", type=int, default=25)
    parser.add_argument("--smoke", action="store_true", help="tiny: 3 generations, 5 viewers")
    args = parser.parse_args(argv)
    if args.smoke:
        args.generations, args.viewers = 3, 5
    started = time.monotonic()
    rows, broken = run(args.generations, args.viewers, args.population)
    print(f"{args.generations} generations of {args.population}, {args.viewers} viewers, "
          f"{time.monotonic() - started:.0f} s")
    print_report(rows, args.viewers, broken)
    return 1 if broken or any(row["drops"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
