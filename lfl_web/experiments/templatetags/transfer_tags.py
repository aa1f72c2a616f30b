"""`{% transfers_of loss %}`: a learned loss's transfers and its "try on another task" form."""

from django import template

from lfl_web.experiments.transfers.panel import panel_context

register = template.Library()


@register.inclusion_tag("experiments/_transfers.html", takes_context=True)
def transfers_of(context, loss, for_request=False):
    """By default the same HTML for every viewer (the dashboard's panels are rendered once per event,
    for all watchers): the form's token is left to static/js/transfer.js, which copies the page's.
    A page rendered for one request (the leaderboard) says `for_request=True`: its form carries the
    token itself and comes back to the page's own address."""
    request = context.get("request") if for_request else None
    if request is None:
        return panel_context(loss)
    return panel_context(loss, for_request=True, next_url=request.get_full_path())
