"""Template filters for numbers the pages show: fitness values, improvements and durations."""

from django import template

register = template.Library()


@register.filter
def fitness(value) -> str:
    """A fitness (lower is better) with 4 decimals; an em dash when there is none."""
    return f"{value:.4f}" if isinstance(value, int | float) else "—"


@register.filter
def signed_percent(value) -> str:
    """0.253 -> "+25.3%"; an em dash for None."""
    return f"{value * 100:+.1f}%" if isinstance(value, int | float) else "—"


@register.filter
def duration(seconds) -> str:
    """Seconds as "1 h 05 min", "3 min 20 s" or "42 s"; an em dash for None."""
    if not isinstance(seconds, int | float):
        return "—"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
