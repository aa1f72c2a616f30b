"""Shared Hypothesis settings for the property-based (fuzz) tests.

Every property runs derandomized (the examples are a fixed function of the test's source), with no
example database, so CI and every laptop see exactly the same inputs and never a new failing
example by chance. No deadline: the test machine is a busy 2-core box, and speed is not the property.

For a deeper search by hand, `LFL_FUZZ_SCALE=20 pytest tests/search_engine -k fuzz` runs 20 times the
examples with fresh random ones (not derandomized); a failure it finds becomes a regression example.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = max(1, int(os.environ.get("LFL_FUZZ_SCALE", "1")))

FUZZ = settings(
    derandomize=SCALE == 1,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fuzz(max_examples: int) -> settings:
    """The shared settings with a per-property example budget (keeps the whole suite fast)."""
    return settings(FUZZ, max_examples=max_examples * SCALE)
