"""Test lanes. A test that starts real processes of the stack (Redis, daphne, Celery workers, the
coordinator, Chromium) and waits on them with deadlines of minutes is marked `stack`, here in one
place, so that `make test-fast` (`pytest -m "not stack"`) leaves it out; `make test` runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: Test files whose every test starts the stack or a browser (paths relative to tests/).
STACK_FILES = ("web/stack/*.py", "web/experiments/test_browser*.py")

#: The helpers that start the stack and Chromium: a test module using one is in the lane wherever it lives.
STACK_HELPERS = frozenset({"tests.web.browser", "tests.web.stack.workers"})


def in_stack_lane(path: Path, module_globals: dict) -> bool:
    """Whether the tests of the file at `path` (whose module namespace is `module_globals`) start the stack."""
    try:
        relative = path.resolve().relative_to(TESTS)
    except ValueError:  # a file outside tests/ (none today): judged by its helpers alone
        relative = None
    if relative is not None and any(relative.match(pattern) for pattern in STACK_FILES):
        return True
    return any(getattr(value, "__module__", None) in STACK_HELPERS for value in module_globals.values())


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    """Mark the stack lane's tests `stack` (explicit marks elsewhere add to it)."""
    verdicts: dict[Path, bool] = {}
    for item in items:
        module = getattr(item, "module", None)
        if module is None:
            continue
        path = Path(module.__file__)
        if path not in verdicts:
            verdicts[path] = in_stack_lane(path, vars(module))
        if verdicts[path]:
            item.add_marker(pytest.mark.stack)
