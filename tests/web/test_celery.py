"""The Celery app: importing it leaves torch out, and a prefork worker's parent imports the numeric
stack before it forks its pool processes (so a replaced pool process is ready at once) without
touching CUDA, which a forked child could not use after its parent had."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: this test process has long imported torch. Every way into CUDA the
# engine could take at import time is replaced by a recorder before the prefork signal is sent.
BEFORE_FORK = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "lfl_web.settings"
import django
django.setup()
from celery import signals
import lfl_web.celery
torch_with_the_app = "torch" in sys.modules
import torch
calls = []
def recorder(name):
    def record(*args, **kwargs):
        calls.append(name)
        raise RuntimeError(name + " called before the fork")
    return record
for name in ("is_available", "device_count", "init", "_lazy_init", "current_device"):
    setattr(torch.cuda, name, recorder(name))
signals.worker_before_create_process.send(sender=None)
print(json.dumps({"torch_with_the_app": torch_with_the_app, "cuda_calls": calls,
                  "cuda_initialized": torch.cuda.is_initialized(),
                  "loaded": [m for m in ("sympy", "search_engine.scoring.plan", "search_engine.tasks.task",
                                         "search_engine.evolution.steps") if m in sys.modules]}))
"""


def test_the_prefork_parent_loads_the_numeric_stack_before_forking_and_touches_no_cuda():
    run = subprocess.run([sys.executable, "-c", BEFORE_FORK], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen == {"torch_with_the_app": False, "cuda_calls": [], "cuda_initialized": False,
                    "loaded": ["sympy", "search_engine.scoring.plan", "search_engine.tasks.task",
                               "search_engine.evolution.steps"]}
