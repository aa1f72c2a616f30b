"""The number filters of the pages: measured values with sensible precision (a small standard
deviation is not "0.0000"), changes that show as none are neither signed nor coloured."""

import math

import pytest

from lfl_web.experiments.templatetags.lfl_format import duration, fitness, rate, signed, signed_percent, trend


@pytest.mark.parametrize(("value", "shown"), [
    (0.1234567, "0.1235"), (0.1, "0.1000"), (12.34567, "12.3457"), (0.001, "0.0010"),  # 4 decimals
    (0.00049, "0.00049"), (3.1234e-5, "3.12e-05"), (-2e-7, "-2e-07"),  # small: 3 significant digits
    (123456.789, "123457"), (2.5e9, "2.5e+09"),  # large: 6 significant digits
    (0, "0"), (0.0, "0"), (None, "—"), ("0.1", "—"), (math.inf, "inf"),
])
def test_a_measured_value_keeps_its_significant_digits(value, shown):
    assert fitness(value) == shown


def test_a_change_carries_its_sign_at_the_same_precision():
    assert [signed(v) for v in (0.0266, -0.0266, 3e-5, -1e-10, 0.0, None)] == [
        "+0.0266", "-0.0266", "+3e-05", "-1e-10", "0", "—"]


@pytest.mark.parametrize(("change", "percent", "css"), [
    (0.253, "+25.3%", "better"), (-0.01, "-1.0%", "worse"), (0.0006, "+0.1%", "better"),
    (-0.0004, "0.0%", ""), (-1e-12, "0.0%", ""), (0.0, "0.0%", ""), (None, "—", ""), (math.nan, "—", ""),
])
def test_a_change_too_small_to_show_is_neither_signed_nor_coloured(change, percent, css):
    assert signed_percent(change) == percent and trend(change) == css


def test_durations_read_in_hours_minutes_or_seconds():
    assert [duration(s) for s in (42.4, 200, 3900, None, math.inf)] == ["42 s", "3 min 20 s", "1 h 05 min", "—", "—"]


@pytest.mark.parametrize(("value", "shown"), [(3.1622776601683795, "3.16"), (0.03162277660168379, "0.0316"),
                                              (1.0, "1"), (None, ""), ("x", "")])
def test_learning_rates_print_to_three_significant_digits(value, shown):
    assert rate(value) == shown
