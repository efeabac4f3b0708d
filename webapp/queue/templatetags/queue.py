"""The queue's part of other apps' pages: why a queued run still waits."""

from django import template

from webapp.queue.selectors import run_wait as wait_reason_of
from webapp.runs.models import Run

register = template.Library()


@register.inclusion_tag("queue/_run_wait.html")
def run_wait(run: Run) -> dict:
    """{% run_wait run %}: for a queued run, why it waits, and a link to the queue."""
    return {"run": run, "reason": wait_reason_of(run)}
