"""Checkpoints written by the ML3 and TaylorGLO runners that preceded the one driver resume with it, and the
resumed search ends as one run from the start by the driver does (the files were written by that code:
a finished 2-report ML3 run and a finished 2-generation TaylorGLO run, extended here by one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search_engine.study.driver import run_search

from ..conftest import without_seconds

FOLDER = Path(__file__).parent / "checkpoints_before_the_driver"
EXTENDED = {"ml3": ("ml3", "meta_steps", 6), "taylorglo": ("taylorglo", "generations", 3)}


@pytest.mark.parametrize("method", sorted(EXTENDED))
def test_a_checkpoint_from_before_the_driver_resumes_and_extends_as_one_run(method, tmp_path):
    stored = json.loads((FOLDER / f"{method}.json").read_text())
    section, name, value = EXTENDED[method]
    config = stored["configuration"]
    config[section] = {**config[section], name: value}
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps(stored["checkpoint"]))
    resumed = run_search(config, checkpoint_path=path, resume=True)
    whole = run_search(config)
    assert len(resumed.history) == len(whole.history) == 3
    assert without_seconds(resumed.to_dict()["history"]) == without_seconds(whole.to_dict()["history"])
    assert resumed.best == whole.best
