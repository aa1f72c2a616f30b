"""The Python client against `manage.py runstack` (daphne, a Celery worker and the coordinator on the
embedded Redis): create -> wait -> hall of fame -> download -> transfer -> leaderboard, on the example
plugin's data set and model (plugins/lfl-example-plugin), and the server's errors as exceptions that
name the field."""

import json

import pytest
from lfl_client import AuthenticationFailed, Client, Conflict, InvalidRequest, NotFound

from ..conftest import tiny_config
from .test_runstack_process import api_key, ready_stack


def test_the_client_runs_an_experiment_from_creation_to_leaderboard(tmp_path):
    with ready_stack(tmp_path / "var") as (stack, lines, env, base):
        client = Client(base, api_key(env), timeout=30)

        with pytest.raises(InvalidRequest) as bad:
            client.create_experiment("bad", config=tiny_config(search={"population_size": 0}))
        assert set(bad.value.errors) == {"search.population_size"} and "search.population_size" in str(bad.value)
        with pytest.raises(AuthenticationFailed):
            Client(base, "not-a-key").experiments()
        with pytest.raises(NotFound):
            client.experiment(999_999)

        assert client.preset("quick")["search"]["generations"] > 1
        from_preset = client.create_experiment("quick, shorter", preset="quick", config={"search": {"generations": 1}})
        assert from_preset.config["search"]["generations"] == 1 and from_preset.config["task"]["model"] == "mlp"
        client.cancel(from_preset.id)
        assert client.wait(from_preset.id, timeout=60, poll=0.5, progress=False).status == "cancelled"

        plugin_task = {"dataset": "breast_cancer", "model": "grid_cnn"}  # the example plugin's
        created = client.create_experiment("from the client", config=tiny_config(task=plugin_task))
        assert created.status == "queued" and created.work_estimate["total_steps"] > 0
        done = client.wait(created.id, timeout=180, poll=0.5, progress=False)
        assert (done.status, done.meta_test_status) == ("succeeded", "succeeded"), "\n".join(lines[-40:])
        assert len(done.generations) == done.total_generations == 2
        assert [e.id for e in client.experiments(scope="mine")] == [created.id, from_preset.id]  # newest first

        hall = client.hall_of_fame(created.id)
        assert [loss.rank for loss in hall] == list(range(1, len(hall) + 1)) and all(loss.expression for loss in hall)
        [best] = [loss for loss in hall if loss.fixed_rate_comparison is not None]  # the one the meta-test tested
        module = client.download(best.id, "torch", to=tmp_path)
        assert module.parent == tmp_path and module.suffix == ".py" and "torch" in module.read_text()
        assert json.loads(client.download(best.id, "json"))["expression"] == best.expression

        run = client.transfer(best.id, "digits", "mlp", seeds=2, steps=20)
        assert run.learned_loss == best.id and run.status in ("queued", "running", "succeeded")
        finished = client.wait_transfer(run.id, timeout=180, poll=0.5, progress=False)
        assert finished.status == "succeeded" and finished.seeds_done == 2 and finished.record
        assert [t.id for t in client.transfers(best.id)] == [run.id]

        board = client.leaderboard(dataset="breast_cancer", model="grid_cnn")
        assert [entry.id for entry in board] == [best.id] and board[0].dataset == "breast_cancer"
        assert client.leaderboard(dataset="no-such-data") == []
        with pytest.raises(Conflict):
            client.cancel(created.id)  # search and meta-test are over: nothing to stop
