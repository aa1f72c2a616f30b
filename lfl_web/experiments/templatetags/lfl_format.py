"""Template filters for the numbers the pages show: measured values, changes, percentages and durations.

Every measured value (fitness, means, standard deviations, baselines) goes through `fitness`, so
a page never prints "0.0000" for a small but real number; a change is coloured by `trend` only when
it shows as a change at the precision the page prints.
"""

import math

from django import template

register = template.Library()

#: From this magnitude up to LARGE a value has 4 decimals; below it, 3 significant digits.
SMALL = 1e-3
#: From this magnitude on a value has 6 significant digits (4 decimals would be noise).
LARGE = 1e4


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@register.filter
def fitness(value) -> str:
    """A measured value with sensible precision: 4 decimals from 0.001 to 10 000 ("0.1234"), 3
    significant digits below ("0.000123", "3.12e-05"), 6 above ("123457"); "0" for zero, an em
    dash for None."""
    if not _is_number(value):
        return "—"
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(float(value))
    size = abs(value)
    if size < SMALL:
        return f"{value:.3g}"
    if size >= LARGE:
        return f"{value:.6g}"
    return f"{value:.4f}"


@register.filter
def rate(value) -> str:
    """A learning rate to 3 significant digits ("3.16", "0.0316"); "" for none (a template's default follows)."""
    if not _is_number(value):
        return ""
    return f"{value:.3g}"


@register.filter
def signed(value) -> str:
    """A change with its sign, at `fitness`'s precision: "+0.0266", "-3.12e-05", "0"; an em dash for None."""
    shown = fitness(value)
    if not _is_number(value) or value <= 0 or not math.isfinite(value):
        return shown
    return "+" + shown


def _tenths_of_percent(value) -> int | None:
    return round(value * 1000) if _is_number(value) and math.isfinite(value) else None


@register.filter
def signed_percent(value) -> str:
    """0.253 -> "+25.3%", -0.01 -> "-1.0%"; "0.0%" for what rounds to no change; an em dash for None."""
    tenths = _tenths_of_percent(value)
    if tenths is None:
        return "—"
    return "0.0%" if tenths == 0 else f"{value * 100:+.1f}%"


@register.filter
def trend(relative_change) -> str:
    """The class of a relative improvement (positive: the learned loss is better): "better",
    "worse", or "" when it shows as 0.0% (a change the page does not print is not coloured)."""
    tenths = _tenths_of_percent(relative_change)
    if not tenths:
        return ""
    return "better" if tenths > 0 else "worse"


@register.filter
def duration(seconds) -> str:
    """Seconds as "1 h 05 min", "3 min 20 s" or "42 s"; an em dash for None."""
    if not _is_number(seconds) or not math.isfinite(seconds):
        return "—"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
