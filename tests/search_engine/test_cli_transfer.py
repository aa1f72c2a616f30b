"""`evaluate --dataset X --model Y`: meta-test a result's loss, or an exported loss, on another task."""

import json

import pytest

from search_engine.cli import main
from search_engine.export.json_export import to_json_export
from search_engine.export.spec import LearnedLossSpec

CROSS_ENTROPY = "mul(-1, mul(y, log(f)))"
CONFIG = {"task": {"dataset": "digits", "model": "logistic", "max_train": 200}, "training": {"steps": 10},
          "meta_test": {"steps": 10, "seeds": 2}, "device": "cpu"}


@pytest.fixture
def result_path(tmp_path):
    """A minimal result.json: its configuration and a hall of fame of two losses."""
    path = tmp_path / "result.json"
    path.write_text(json.dumps({
        "format": "lfl-search-result", "config": CONFIG, "baseline_loss": "cross_entropy", "baseline_fitness": 0.2,
        "hall_of_fame": [{"expression": CROSS_ENTROPY, "fitness": 0.1, "weights": None},
                         {"expression": "square(sub(y, f))", "fitness": 0.15, "weights": None}],
    }))
    return path


def test_a_results_loss_is_tested_on_another_task_and_kept_under_transfers(result_path, capsys):
    args = ["evaluate", "--result", str(result_path), "--dataset", "digits", "--model", "mlp", "--seeds", "1"]
    assert main(args) == 0
    assert "on digits/mlp: 1 seeds x 10 steps" in capsys.readouterr().out
    transfers = json.loads(result_path.read_text())["transfers"]
    assert len(transfers) == 1
    record = transfers[0]
    assert record["rank"] == 1 and record["target"] == {"dataset": "digits", "model": "mlp"}
    assert record["source"] == {"dataset": "digits", "model": "logistic"} and len(record["learned"]) == 1
    # a second run on the same target replaces its record; another rank gets its own
    assert main(args) == 0 and main([*args, "--rank", "2"]) == 0
    transfers = json.loads(result_path.read_text())["transfers"]
    assert [(t["rank"], t["expression"]) for t in transfers] == [(1, CROSS_ENTROPY), (2, "square(sub(y, f))")]


def test_an_exported_loss_is_tested_and_its_record_written_next_to_it(tmp_path, capsys):
    spec = LearnedLossSpec(expression=CROSS_ENTROPY, weights=None, kind="classification", dataset="digits",
                           model="logistic", fitness=0.1, baseline_loss="cross_entropy", baseline_fitness=0.2,
                           metric="error rate")
    export = tmp_path / "loss.json"
    export.write_text(json.dumps(to_json_export(spec)))
    args = ["evaluate", "--loss", str(export), "--dataset", "digits", "--model", "logistic", "--seeds", "1",
            "--steps", "5"]
    assert main(args) == 0
    record = json.loads((tmp_path / "loss.transfer-digits-logistic.json").read_text())
    assert record["steps"] == 5 and len(record["seeds"]) == 1 and record["baseline_loss"] == "cross_entropy"
    assert main([*args, "--out", str(tmp_path / "elsewhere.json")]) == 0
    assert json.loads((tmp_path / "elsewhere.json").read_text())["target"]["model"] == "logistic"


@pytest.mark.parametrize(("extra", "message"), [
    (["--dataset", "digits"], "needs both --dataset and --model"),
    (["--dataset", "imagenet", "--model", "mlp"], "task.dataset: unknown dataset 'imagenet'"),
    (["--dataset", "digits", "--model", "gpt"], "task.model: unknown model 'gpt'"),
    (["--dataset", "diabetes", "--model", "mlp"], "'diabetes' is a regression dataset"),
    (["--dataset", "digits", "--model", "mlp", "--rank", "9"], "--rank must be between 1 and 2"),
    (["--data-root", "/data"], "--data-root and --out are for a transfer"),
])
def test_bad_transfer_options_are_named_and_nothing_is_written(result_path, capsys, extra, message):
    before = result_path.read_text()
    assert main(["evaluate", "--result", str(result_path), *extra]) == 2
    assert message in capsys.readouterr().err
    assert result_path.read_text() == before


def test_an_export_needs_a_target_and_result_and_loss_exclude_each_other(result_path, tmp_path, capsys):
    assert main(["evaluate", "--loss", str(tmp_path / "missing.json"), "--dataset", "digits", "--model", "mlp"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["evaluate", "--loss", str(result_path)]) == 2
    assert "needs both --dataset and --model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--result", str(result_path), "--loss", str(result_path)])
    assert "not allowed with argument" in capsys.readouterr().err
