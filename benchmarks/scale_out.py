"""One search over 1 and over 2 evaluation workers: seconds per generation side by side.

    python -m benchmarks.scale_out [--generations 5] [--population 25] [--chunk 1] [--smoke]

The search is the MNIST/LeNet-5 preset (configs/mnist_lenet5.json, population 25) on the bundled
digits28 data, shrunk to a few generations with fewer training and meta steps. Each run gets a fresh SQLite
database, an embedded Redis, a coordinator and N real Celery worker processes (solo pool, one
torch thread each: on this 2-core machine, two workers use both cores). Prints each generation's
seconds with 1 and with 2 workers, the generations per hour of each and their ratio, and whether
the two histories (without wall-clock seconds) are identical; exits 1 if they are not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def search_config(args) -> dict:
    config = json.loads((ROOT / "configs" / "mnist_lenet5.json").read_text())
    config["task"] = {"dataset": "digits28", "model": "lenet5", "val_fraction": 0.1}
    config["search"].update(population_size=args.population, generations=args.generations)
    config["training"]["steps"] = args.steps
    config["local_search"].update(meta_steps=args.meta_steps)
    config["meta_test"].update(steps=20, seeds=1)
    config["evaluation"] = {"strategy": "batched", "max_population_chunk": args.chunk}
    config["device"] = "cpu"
    return config


def environment(folder: Path, redis_url: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "lfl_web.settings", "REDIS_URL": redis_url,
            "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}", "LFL_VAR_DIR": str(folder / "var"),
            "LFL_CHANNEL_LAYER": "redis", "LFL_CHUNK_DISPATCH": "celery", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def run_once(config: dict, workers: int, timeout: float) -> dict:
    """Run the search on `workers` workers; returns its history (from the database) and wall seconds."""
    from lfl_web.redis_server import EmbeddedRedis
    from lfl_web.stack.supervisor import kill_group

    folder = Path(tempfile.mkdtemp(prefix=f"lfl-scale-{workers}-"))
    redis = EmbeddedRedis().start()
    env = environment(folder, redis.url)
    processes = []
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        for i in range(1, workers + 1):
            log = folder / f"w{i}.log"
            processes.append(start([sys.executable, "-m", "celery", "-A", "lfl_web", "worker", "--pool=solo",
                                    "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
                                    "-n", f"w{i}@%h", "-Q", "celery,lfl.evaluation"], env, log))
            _wait(lambda log=log: "ready." in log.read_text(), 120, f"worker {i} did not start: {log}")
        processes.append(start([sys.executable, "manage.py", "coordinate"], env,
                               folder / "coordinator.log"))
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", SUBMIT_AND_WAIT, json.dumps(config), str(timeout)], cwd=ROOT,
                             env=env, check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["wall_seconds"] = time.perf_counter() - started
        result["folder"] = str(folder)
        return result
    finally:
        for process in processes:
            kill_group(process.pid)
            process.wait()
        redis.stop()


def _wait(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(message)
        time.sleep(0.2)


# Run in a process on the benchmark's database: create the experiment, send it, wait, print the record.
SUBMIT_AND_WAIT = """
import json, sys, time
import django
django.setup()
from django.contrib.auth import get_user_model
from lfl_web import celery_app
from lfl_web.experiments.models import Chunk, Experiment, Generation, StoredSearch
from lfl_web.experiments.tasks import run_experiment
from django.conf import settings

config, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
owner = get_user_model().objects.create_user("bench", password="x")
experiment = Experiment.objects.create_validated(owner=owner, name="scale-out", config=config)
with celery_app.connection_for_write(settings.CELERY_BROKER_URL) as broker:
    run_experiment.apply_async((experiment.pk,), connection=broker, ignore_result=True)
deadline = time.monotonic() + timeout
while not Experiment.objects.get(pk=experiment.pk).is_finished:
    if time.monotonic() > deadline:
        raise SystemExit("the search did not finish in time")
    time.sleep(0.2)
experiment = Experiment.objects.get(pk=experiment.pk)
history = StoredSearch.objects.get(experiment=experiment).state["history"]
workers = sorted(set(Chunk.objects.filter(experiment=experiment).values_list("worker", flat=True)))
print(json.dumps({"status": experiment.status, "error": experiment.error, "history": history,
                  "chunks": Chunk.objects.filter(experiment=experiment).count(), "workers": workers}))
"""


def without_seconds(history: list[dict]) -> str:
    return json.dumps([{k: v for k, v in g.items() if k != "seconds"} for g in history], sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--population", type=int, default=25, help="the preset's own population (25)")
    parser.add_argument("--chunk", type=int, default=1, help="candidates per chunk (evaluation.max_population_chunk)")
    parser.add_argument("--steps", type=int, default=150, help="training steps per candidate")
    parser.add_argument("--meta-steps", type=int, default=10, help="local search meta steps per candidate")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--smoke", action="store_true", help="a tiny run that checks the benchmark works")
    args = parser.parse_args(argv)
    if args.smoke:
        args.generations, args.population, args.steps, args.meta_steps = 2, 4, 5, 1
    config = search_config(args)
    runs = {n: run_once(config, n, args.timeout) for n in (1, 2)}
    for n, run in runs.items():
        if run["status"] != "succeeded":
            print(f"{n} worker(s): the search ended {run['status']}: {run['error']} (logs in {run['folder']})")
            return 1
    one, two = runs[1], runs[2]
    print(f"LeNet-5 on digits28, population {args.population}, {args.generations} generations, chunks of "
          f"{args.chunk}, {args.steps} training steps, {args.meta_steps} meta steps; one torch thread per worker")
    print("| generation | 1 worker s | 2 workers s | speed-up |")
    print("|---|---|---|---|")
    for a, b in zip(one["history"], two["history"]):
        print(f"| {a['generation']} | {a['seconds']:.1f} | {b['seconds']:.1f} | {a['seconds'] / b['seconds']:.2f}x |")
    for label, first in (("all", 0), ("after generation 0", 1)):
        total = [sum(g["seconds"] for g in run["history"][first:]) for run in (one, two)]
        print(f"| {label} | {total[0]:.1f} | {total[1]:.1f} | {total[0] / total[1]:.2f}x |")
    total = [sum(g["seconds"] for g in run["history"]) for run in (one, two)]
    per_hour = [3600 * len(run["history"]) / t for run, t in zip((one, two), total)]
    print(f"generations per hour: 1 worker {per_hour[0]:.0f}, 2 workers {per_hour[1]:.0f} "
          f"({per_hour[1] / per_hour[0]:.2f}x; target >= 1.7x); chunks {one['chunks']}, workers used {two['workers']}")
    print("(generation 0 includes the second worker loading the data and building its evaluator for this search)")
    same = without_seconds(one["history"]) == without_seconds(two["history"])
    print(f"histories identical (without seconds): {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
