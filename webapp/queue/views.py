from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.queue.forms import PriorityForm
from webapp.queue.selectors import queue_sections, running_runs, worker_rows
from webapp.queue.services import PRIORITY_MAX, PRIORITY_MIN, run_priority_set
from webapp.runs.selectors import get_run_for_user


def _queue_context(request: HttpRequest, **extra) -> dict:
    running, running_hidden = running_runs(request.user)
    return {"sections": queue_sections(request.user), "running": running,
            "running_hidden": running_hidden, "priority_min": PRIORITY_MIN,
            "priority_max": PRIORITY_MAX, **extra}


@login_required
@require_GET
def queue_page(request: HttpRequest) -> HttpResponse:
    """The queued runs of the user's teams in the order workers take them, why each waits, and
    the runs that run now; htmx gets the list alone (its refresh)."""
    template = "queue/queue.html#queue-list" if request.htmx else "queue/queue.html"
    return render(request, template, _queue_context(request))


@login_required
@require_POST
def run_priority_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """Raise, lower or set a queued run's priority (webapp.queue.services.run_priority_set);
    htmx gets the queue list back, with the refusal in it, everything else the queue page."""
    run = get_run_for_user(request.user, run_id)
    form = PriorityForm(request.POST)
    error = None
    if form.is_valid():
        try:
            run_priority_set(run=run, user=request.user,
                             priority=form.new_priority(run.priority))
        except ValidationError as exc:
            error = " ".join(exc.messages)
    else:
        error = form.error_text()
    if request.htmx:
        return render(request, "queue/queue.html#queue-list",
                      _queue_context(request, error=error, error_run=run.pk),
                      status=422 if error else 200)
    if error:
        messages.error(request, f"{run}: {error}")
    return redirect("queue:queue")


@login_required
@require_GET
def workers_page(request: HttpRequest) -> HttpResponse:
    return render(request, "queue/workers.html", {"rows": worker_rows(request.user)})
