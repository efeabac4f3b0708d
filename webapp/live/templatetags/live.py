"""The run page's live part, for the page to compose: `{% load live %}`, then
`{% run_live run can_edit=… %}` (the status, charts, rollouts, checkpoints and log panels, with
the event stream that updates them) or `{% run_live_status run can_edit=… %}` (the status panel
alone, as a cancel returns it to htmx). The run page's app (runs, beneath this one) does not
import this one."""

from __future__ import annotations

from django import template

from webapp.live.live_feed import current_cursor
from webapp.live.panels import live_context
from webapp.runs.selectors import HEADLINE_METRICS, metric_keys

register = template.Library()


@register.inclusion_tag("live/run_live.html", takes_context=True)
def run_live(context: template.Context, run, *, can_edit: bool) -> dict:
    # Read before the panels: the stream may then repeat a row they show, but never miss one.
    stream_cursor = current_cursor(run.pk).encode()
    # A panel for each metric recorded so far, and one for each headline metric, which says
    # why when the run does not record it.
    chart_keys = [] if run.is_evaluation else HEADLINE_METRICS + metric_keys(run)
    return {**live_context(run, context["user"], can_edit=can_edit),
            "stream_cursor": stream_cursor, "headline_metrics": HEADLINE_METRICS,
            "chart_keys": chart_keys, "project": run.experiment.project,
            "csrf_token": context.get("csrf_token"), "user": context["user"]}


@register.inclusion_tag("live/run_live.html#live", takes_context=True)
def run_live_status(context: template.Context, run, *, can_edit: bool) -> dict:
    return {**live_context(run, context["user"], can_edit=can_edit, panels=("live",)),
            "csrf_token": context.get("csrf_token")}
