"""The client's parts that need no server: errors by status and field, answers into typed objects,
presets laid under a configuration, file names of downloads, DataFrames."""

from __future__ import annotations

import sys

import pytest
from lfl_client import (
    AuthenticationFailed,
    Client,
    ExperimentDetail,
    InvalidRequest,
    LeaderboardEntry,
    LflError,
    ServiceUnavailable,
    to_frame,
)
from lfl_client.client import _filename, _overlay
from lfl_client.errors import error_for
from lfl_client.types import from_dict


def test_a_field_named_error_names_each_field_in_its_message():
    error = error_for(400, {"errors": {"search.crossover_rate": "must be in [0, 1], got 1.5", "name": "required"}})
    assert isinstance(error, InvalidRequest) and error.status == 400
    assert error.errors == {"search.crossover_rate": "must be in [0, 1], got 1.5", "name": "required"}
    assert str(error) == "400: search.crossover_rate: must be in [0, 1], got 1.5; name: required"


def test_each_status_has_its_exception_and_unknown_bodies_are_said_plainly():
    assert isinstance(error_for(401, {"error": "invalid or revoked API token"}), AuthenticationFailed)
    busy = error_for(503, {"error": "the task queue is unreachable"}, "10")
    assert isinstance(busy, ServiceUnavailable) and busy.retry_after == 10.0
    odd = error_for(502, "<html>Bad gateway</html>")
    assert type(odd) is LflError and "without a JSON error" in str(odd) and "Bad gateway" in str(odd)


def test_an_unreachable_server_is_named():
    from lfl_web.redis_server import free_port

    with pytest.raises(LflError) as caught:
        Client(f"http://127.0.0.1:{free_port()}", "key", timeout=5).experiments()
    assert caught.value.status == 0 and "cannot reach the lfl server at http://127.0.0.1:" in str(caught.value)


def test_the_api_root_is_found_from_either_address():
    assert Client("http://h:8000/", "k").api == Client("http://h:8000/api/", "k").api == "http://h:8000/api"


def test_answers_become_typed_objects_and_unknown_fields_stay_in_raw():
    detail = ExperimentDetail.from_answer({
        "experiment": {"id": 3, "name": "e", "status": "succeeded", "meta_test_status": "running", "new": 1},
        "generations": [{"generation": 0, "best_fitness": 0.1, "hall_of_fame": []}],
        "learned_losses": [{"id": 9, "expression": "square(sub(y, f))", "verdict": {"code": "tie", "sentence": "s"},
                            "tuned_comparison": {"p_value": 0.3, "seeds": 5}, "fixed_rate_comparison": None}],
    })
    assert detail.id == 3 and detail.raw["new"] == 1 and not detail.done  # its meta-test still runs
    assert detail.generations[0].best_fitness == 0.1
    loss = detail.learned_losses[0]
    assert loss.verdict.code == "tie" and loss.tuned_comparison.p_value == 0.3 and loss.fixed_rate_comparison is None
    entry = from_dict(LeaderboardEntry, {"id": 1, "meta_test_improvement": 0.25, "verdict": {"code": "better"}})
    assert entry.meta_test_improvement == 0.25 and entry.verdict.code == "better"


def test_a_preset_is_laid_under_the_given_sections():
    preset = {"task": {"dataset": "digits", "model": "mlp"}, "search": {"generations": 25, "population_size": 25}}
    merged = _overlay(preset, {"search": {"generations": 3}, "seed": 4})
    assert merged == {"task": {"dataset": "digits", "model": "mlp"}, "search": {"generations": 3, "population_size": 25},
                      "seed": 4}
    assert preset["search"]["generations"] == 25  # the preset itself is untouched


def test_download_file_names_come_from_the_header_and_never_leave_the_folder():
    assert _filename("attachment; filename=\"loss_7.py\"", "x") == "loss_7.py"
    assert _filename("attachment; filename*=utf-8''l%C3%B6ss.py", "x") == "löss.py"
    assert _filename("attachment; filename=\"../../etc/passwd\"", "x") == "passwd"
    assert _filename("", "default.py") == "default.py"


def test_frames_have_a_row_per_object_with_nested_answers_flattened():
    entries = [from_dict(LeaderboardEntry, {"id": 1, "expression": "square(sub(y, f))", "verdict": {"code": "better"},
                                            "tuned_comparison": {"p_value": 0.01, "seeds": 5}}),
               from_dict(LeaderboardEntry, {"id": 2, "verdict": {"code": "tie"}})]
    frame = to_frame(entries)
    assert list(frame["id"]) == [1, 2] and list(frame["verdict_code"]) == ["better", "tie"]
    assert frame["tuned_comparison_p_value"].iloc[0] == 0.01 and "raw" not in frame.columns
    detail = ExperimentDetail.from_answer({"experiment": {"id": 3}, "generations": [{"generation": 0}],
                                           "learned_losses": []})
    assert to_frame([detail])["generations"].iloc[0] == 1  # lists of objects are counted, not nested


def test_frames_say_how_to_get_pandas_without_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'lfl-client\[pandas\]'"):
        to_frame([])
