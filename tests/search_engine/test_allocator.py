"""glibc keeps freed memory for reuse when a search runs, so training steps stop page-faulting."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Minor page faults of the second of two short batched local searches (LeNet-5, 7 members): the
# first run warms the allocator up, the second shows the steady state. The unrolled program, whose
# large graph tensors fault every step with glibc's defaults (the shared-start program allocates
# less, and glibc's own adaptive threshold sometimes already spares it all faults).
FAULTS = """
import resource, sys, torch
from search_engine.allocator import keep_freed_memory
from search_engine.batched_meta import local_search_population
from search_engine.config import load_config
from search_engine.expression import CROSS_ENTROPY, SQUARED_ERROR
from search_engine.tasks import load_task
print(keep_freed_memory())
torch.set_num_threads(1)
cfg = load_config({"task": {"dataset": "digits28", "model": "lenet5"}, "device": "cpu",
                   "local_search": {"meta_steps": 4, "batch_size": 128}})
task = load_task(cfg)
trees = [CROSS_ENTROPY, SQUARED_ERROR] * 3 + [CROSS_ENTROPY]
local_search_population(task, trees, cfg.local_search, cfg.training, 0, unrolled=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
local_search_population(task, trees, cfg.local_search, cfg.training, 0, unrolled=True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run(tuning: str) -> tuple[bool, int]:
    env = {**os.environ, "LFL_MALLOC_TUNING": tuning}
    out = subprocess.run([sys.executable, "-c", FAULTS], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_keeping_freed_memory_removes_most_page_faults_of_a_local_search():
    off_applied, off_faults = run("0")
    on_applied, on_faults = run("1")
    assert (off_applied, on_applied) == (False, True)  # LFL_MALLOC_TUNING=0 leaves glibc's defaults
    assert on_faults * 5 < off_faults, (on_faults, off_faults)


def test_keep_freed_memory_is_applied_once():
    from search_engine import allocator

    first = allocator.keep_freed_memory()
    assert allocator.keep_freed_memory() is first
