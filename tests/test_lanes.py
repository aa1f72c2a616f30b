"""The fast lane: `pytest -m "not stack"` (make test-fast) leaves out exactly the tests that start
the real stack or a browser, and keeps every other one; an unknown marker is an error."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The stack and browser files, the benchmark smokes (explicit marks) beside fast tests of the same
# files, and a fast file that starts daphne for a second (it stays in the fast lane).
PATHS = ["tests/web/stack", "tests/web/experiments/test_browser.py", "tests/web/experiments/test_browser_methods.py",
         "tests/web/experiments/test_browser_outage.py", "tests/test_benchmarks.py",
         "tests/web/experiments/test_error_pages.py"]


# Collects PATHS with `-m "not stack"` and prints each selected test id and each deselected one.
COLLECT = """
import sys, pytest
class Report:
    def pytest_deselected(self, items):
        print(*("stack " + item.nodeid for item in items), sep="\\n")
    def pytest_collection_finish(self, session):
        print(*("fast " + item.nodeid for item in session.items), sep="\\n")
args = ["--collect-only", "-q", "-p", "no:cacheprovider", "-m", "not stack", *sys.argv[1:]]
sys.exit(pytest.main(args, plugins=[Report()]))
"""


def lanes() -> tuple[set[str], set[str]]:
    """The test ids of PATHS that `pytest -m "not stack"` leaves out, and those it keeps (collection only)."""
    run = subprocess.run([sys.executable, "-c", COLLECT, *PATHS], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    words = [line.split(" ", 1) for line in run.stdout.splitlines() if line.startswith(("stack ", "fast "))]
    return {test for lane, test in words if lane == "stack"}, {test for lane, test in words if lane == "fast"}


def test_the_stack_lane_holds_the_stack_browser_and_benchmark_smoke_tests_and_nothing_else():
    stack, fast = lanes()
    assert stack and fast and not stack & fast
    files = {test.split("::")[0] for test in stack}
    assert {"tests/web/stack/test_stack.py", "tests/web/stack/test_end_to_end.py",
            "tests/web/stack/test_fan_out_workers.py", "tests/web/experiments/test_browser.py",
            "tests/web/experiments/test_browser_methods.py", "tests/web/experiments/test_browser_outage.py"} <= files
    assert all(test.startswith(("tests/web/stack/", "tests/web/experiments/test_browser", "tests/test_benchmarks.py"))
               for test in stack)
    assert {test.split("::")[1] for test in stack if test.startswith("tests/test_benchmarks.py")} == {
        "test_live_updates_smoke_reaches_every_viewer", "test_scale_out_smoke_runs_one_search_on_one_and_on_two_workers",
        "test_quality_smoke_meta_tests_every_method_on_each_search_seed",
        "test_generation_cost_smoke_prints_a_ratio_per_variant"}
    assert "tests/test_benchmarks.py::test_presets_validate" in fast
    assert any(test.startswith("tests/web/experiments/test_error_pages.py::") for test in fast)


def test_the_marker_is_registered_and_unknown_markers_are_errors():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in options["addopts"].split()
    assert any(line.startswith("stack:") for line in options["markers"])


def test_make_test_fast_leaves_the_stack_out_and_make_test_keeps_it():
    makefile = (ROOT / "Makefile").read_text()
    fast = makefile.split("\ntest-fast:")[1].split("\n\n")[0]
    everything = makefile.split("\ntest:")[1].split("\n\n")[0]
    assert '-m pytest -q -m "not stack"' in fast and "lint" in fast.splitlines()[0]
    assert "-m pytest -q" in everything and " -m " not in everything.split("-m pytest")[1]
    assert "make test\n" in (ROOT / ".ci" / "run").read_text()  # CI runs everything


def test_a_test_file_that_starts_the_stack_through_the_helpers_is_in_the_lane_wherever_it_lives():
    from tests.conftest import TESTS, in_stack_lane
    from tests.web.browser import Stack, headless_chromium
    from tests.web.polling import wait_until

    elsewhere = TESTS / "web" / "api" / "test_somewhere.py"
    assert in_stack_lane(elsewhere, {"Stack": Stack}) and in_stack_lane(elsewhere, {"chromium": headless_chromium})
    assert not in_stack_lane(elsewhere, {"wait_until": wait_until, "ROOT": ROOT})
    assert in_stack_lane(TESTS / "web" / "stack" / "test_anything.py", {})
    assert in_stack_lane(TESTS / "web" / "experiments" / "test_browser_layout.py", {})
