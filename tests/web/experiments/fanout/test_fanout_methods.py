"""Every method as chunks (experiments.fanout), in this process: the history of the single-process
`run_search` whatever order or repetition the chunks come back with; a search stopped and taken up
again; a chunk that raises. Real worker processes: tests/web/stack/test_fan_out_workers.py."""

import json
import random
from pathlib import Path

import pytest

from lfl_web.experiments.fanout import chunk_worker, dispatch, search_driver
from lfl_web.experiments.models import Chunk, ChunkStatus, Status, StoredSearch

from ...conftest import tiny_config
from ...histories import reference_history, stored_history, without_seconds
from .test_fanout import drain_shuffled

pytestmark = pytest.mark.django_db

ML3 = {"meta_steps": 6, "report_every": 2, "hidden_units": 8, "batch_size": 32, "meta_lr": 0.01}
CHUNKS_OF_2 = {"strategy": "batched", "max_population_chunk": 2}

CONFIGS = {
    "evomal": tiny_config(search={"population_size": 6, "generations": 2}, evaluation=CHUNKS_OF_2,
                          local_search={"mode": "all", "meta_steps": 2}),
    "gplfl": tiny_config(method="gplfl", search={"population_size": 6, "generations": 2}, evaluation=CHUNKS_OF_2),
    "taylorglo": tiny_config(method="taylorglo", taylorglo={"population_size": 5, "generations": 3},
                             evaluation=CHUNKS_OF_2),
    "ml3": tiny_config(method="ml3", ml3=ML3),
    "random": tiny_config(method="random", search={"population_size": 6, "generations": 2}, evaluation=CHUNKS_OF_2,
                          local_search={"mode": "all", "meta_steps": 2}),
}


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_every_method_fans_out_with_the_history_of_run_search(make_experiment, method):
    config = CONFIGS[method]
    experiment = make_experiment(config=config)
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    first = list(Chunk.objects.filter(experiment=experiment, generation=0))
    assert first, "generation 0 is stored as chunks"
    ran = drain_shuffled(random.Random(3), repeat=True)
    experiment.refresh_from_db()
    assert experiment.status == Status.SUCCEEDED, experiment.error
    assert stored_history(experiment) == reference_history(config)
    generations = len(reference_history(config))
    assert ran >= generations and Chunk.objects.filter(experiment=experiment).count() == ran
    if method == "taylorglo":  # 5 proposals in chunks of 2, every generation
        assert [c.indices for c in first] == [[0, 1], [2, 3], [4]]
    if method == "ml3":  # one block of meta steps per generation; its weights travel with it
        assert ran == generations and len(first[0].items[0]["weights"]) > 0


@pytest.mark.parametrize("method", ["ml3", "taylorglo"])
def test_a_state_stored_mid_generation_is_taken_up_by_any_process(make_experiment, method):
    """Chunks of one generation finished one by one, with `advance` reading the state back from the
    database between them (as a different worker would), end as the single-process search does."""
    config = CONFIGS[method]
    experiment = make_experiment(config=config)
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    queue = dispatch.inline_queue()
    while queue:
        pk = queue.popleft()
        assert chunk_worker.run_chunk(pk, worker=f"w{pk % 3}") == "done"
        StoredSearch.objects.get(experiment=experiment)  # the state is in the database after every chunk
    experiment.refresh_from_db()
    assert experiment.status == Status.SUCCEEDED
    assert stored_history(experiment) == reference_history(config)


@pytest.mark.parametrize("method", ["ml3", "taylorglo"])
def test_a_chunk_that_raises_is_recorded_and_the_search_goes_on(make_experiment, monkeypatch, method):
    experiment = make_experiment(config=CONFIGS[method])
    experiment.claim_for_worker("t")
    search_driver.start(experiment)
    real, calls = search_driver.method_of(CONFIGS[method]).evaluate, []

    def fails_once(self, evaluator, phase, items):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a worker ran out of memory")
        return real(evaluator, phase, items)

    monkeypatch.setattr(type(search_driver.method_of(CONFIGS[method])), "evaluate", fails_once)
    chunk_worker.drain()
    experiment.refresh_from_db()
    assert experiment.status == Status.SUCCEEDED
    failed = Chunk.objects.get(experiment=experiment, status=ChunkStatus.FAILED)
    assert "a worker ran out of memory" in failed.error
    history = StoredSearch.objects.get(experiment=experiment).state["history"]
    assert history[0]["rejected"] >= 1 and len(history) == len(reference_history(CONFIGS[method]))


CHECKPOINTS_BEFORE = Path(__file__).parents[3] / "search_engine" / "study" / "checkpoints_before_the_driver"


@pytest.mark.parametrize(("method", "extended"), [("ml3", ("ml3", "meta_steps", 6)),
                                                  ("taylorglo", ("taylorglo", "generations", 3))])
def test_a_search_running_in_one_task_before_the_driver_continues_over_chunks(make_experiment, tmp_path,
                                                                             method, extended):
    """An ML3 or TaylorGLO search that ran in one worker task, with its checkpoint on that worker's disk,
    is taken up from the checkpoint by the fanned-out driver and ends as one run of it would."""
    from search_engine.study.driver import run_search

    stored = json.loads((CHECKPOINTS_BEFORE / f"{method}.json").read_text())
    section, name, value = extended
    config = {**stored["configuration"], section: {**stored["configuration"][section], name: value}}
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps(stored["checkpoint"]))
    experiment = make_experiment(config=config, total_generations=3)
    experiment.claim_for_worker("t")
    search_driver.start(experiment, resume_file=path)
    chunk_worker.drain()
    experiment.refresh_from_db()
    assert experiment.status == Status.SUCCEEDED
    assert Chunk.objects.filter(experiment=experiment, generation__lt=2).count() == 0  # 2 came from the file
    whole = run_search(config).to_dict()["history"]
    assert stored_history(experiment) == without_seconds(json.loads(json.dumps(whole)))
