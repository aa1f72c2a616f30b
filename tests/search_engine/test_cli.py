import json
import subprocess
import sys
from pathlib import Path

from search_engine.cli import main

from .conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path, **overrides):
    path = tmp_path / "config.json"
    path.write_text(tiny_config(**overrides).to_json())
    return path


def test_search_then_evaluate_end_to_end(tmp_path, capsys):
    config = write_config(tmp_path)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "search_engine", "search", "--config", str(config), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "best loss:" in proc.stdout and "baseline (cross_entropy)" in proc.stdout
    assert "evaluation: populations of up to 25 on cpu" in proc.stdout  # tiny_config: batched, chunk 25
    result = json.loads((out / "result.json").read_text())
    assert result["format"] == "lfl-search-result" and result["status"] == "completed"
    assert len(result["history"]) == 3 and result["best"]["expression"]
    assert {"evaluated", "rejected", "cache_hits"} <= set(result["totals"])
    assert (out / "checkpoint.json").exists()

    assert main(["evaluate", "--result", str(out / "result.json"), "--seeds", "2", "--steps", "30",
                 "--no-tune-lr"]) == 0
    result = json.loads((out / "result.json").read_text())
    mt = result["meta_test"]
    assert len(mt["learned"]) == len(mt["baseline"]) == 2 and mt["metric"] == "error rate"
    assert "tuned_lr" not in mt  # the paper's protocol alone, as asked
    capsys.readouterr()
    assert main(["evaluate", "--result", str(out / "result.json"), "--seeds", "2", "--steps", "10"]) == 0
    meta = json.loads((out / "result.json").read_text())["meta_test"]
    tuned = meta["tuned_lr"]  # tuned by default
    assert tuned["learned_lr"] is not None and len(tuned["learned"]) == 2
    # The final choice came first: the best few on validation, and the rank it chose was meta-tested.
    assert meta["final_choice"]["chosen"] == meta["rank"] and meta["expression"] == result["hall_of_fame"][
        meta["rank"] - 1]["expression"]
    printed = capsys.readouterr().out.splitlines()
    assert any(line.startswith("final choice on validation data") for line in printed)
    verdict, at_tuned, at_search_rate = (i for i, line in enumerate(printed) if line.startswith(
        ("The learned loss is", "at each loss's own best learning rate", "at the search's learning rate")))
    assert verdict < at_tuned < at_search_rate, printed  # the verdict and the tuned comparison lead


def test_resume_flag_continues_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--config", str(write_config(tmp_path)), "--out", str(out), "--quiet"]) == 0
    longer = write_config(tmp_path, search={"generations": 4})
    assert main(["search", "--config", str(longer), "--out", str(out), "--quiet", "--resume"]) == 0
    assert len(json.loads((out / "result.json").read_text())["history"]) == 4


def test_bad_config_is_reported_and_nothing_written(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"search": {"crossover_rate": 2}}))
    assert main(["search", "--config", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "search.crossover_rate" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_evaluate_rejects_a_file_that_is_not_a_result(tmp_path, capsys):
    other = tmp_path / "x.json"
    other.write_text("[]")
    assert main(["evaluate", "--result", str(other)]) == 2
    assert "not an lfl search result" in capsys.readouterr().err


def test_export_and_shape_commands(tmp_path, capsys):
    out = tmp_path / "run"
    config = write_config(tmp_path, search={"generations": 1}, local_search={"mode": "all", "meta_steps": 2})
    assert main(["search", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    result = out / "result.json"
    for fmt, name in (("torch", "loss.py"), ("torchscript", "loss.pt"), ("latex", "loss.tex"), ("json", "loss.json")):
        assert main(["export", "--result", str(result), "--format", fmt, "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name).stat().st_size > 0
    source = (tmp_path / "loss.py").read_text()
    assert "class LearnedLoss(torch.nn.Module)" in source and "WEIGHTS" in source
    exported = json.loads((tmp_path / "loss.json").read_text())
    assert exported["weights"] == json.loads(result.read_text())["hall_of_fame"][0]["weights"]
    assert main(["shape", "--result", str(result), "--csv", str(tmp_path / "shape.csv")]) == 0
    assert (tmp_path / "shape.csv").read_text().startswith("p,")
    assert main(["export", "--result", str(result), "--rank", "99", "--format", "torch"]) == 2
    assert "rank" in capsys.readouterr().err
