from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from training.config import RunConfig
from webapp.runs import selectors
from webapp.runs.live_feed import current_cursor
from webapp.runs.panels import live_context
from webapp.runs.services import run_cancel, run_resume
from webapp.reviews.views import run_review_context
from webapp.teams.models import Role


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.get_run_for_user(request.user, run_id)
    config_rows = [(f.name, run.config.get(f.name), f.metadata["help"])
                   for f in RunConfig.fields() if f.name in run.config]
    # Read before the panels: the stream may then repeat a row they show, but never miss one.
    stream_cursor = current_cursor(run.pk).encode()
    return render(request, "runs/run_detail.html",
                  {**run_review_context(run, request.user), **live_context(run, request.user),
                   "config_rows": config_rows, "experiment": run.experiment,
                   "project": run.experiment.project, "stream_cursor": stream_cursor})


@login_required
@require_GET
def run_metrics(request: HttpRequest, run_id: int) -> JsonResponse:
    """Chart data: {"keys": [...], "series": {key: [steps, values]}} for steps after ?after=."""
    run = selectors.get_run_for_user(request.user, run_id)
    try:
        after = int(request.GET.get("after", -1))
    except ValueError:
        after = -1
    keys = selectors.metric_keys(run)
    return JsonResponse({"keys": keys, "active": not run.is_terminal,
                         "series": selectors.metric_series(run, keys, after_step=after)})


@login_required
@require_POST
def run_cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.get_run_for_user(request.user, run_id, Role.MEMBER)
    run_cancel(run=run, user=request.user)
    if request.htmx:
        return render(request, "runs/run_detail.html#live", live_context(run, request.user))
    return redirect(run)


@login_required
@require_POST
def run_resume_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """Start a new run from this one's newest checkpoint and go to it; a run that cannot be
    resumed stays on its page with the reason."""
    run = selectors.get_run_for_user(request.user, run_id, Role.MEMBER)
    try:
        target = run_resume(run=run, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        target = run
    url = target.get_absolute_url()
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
