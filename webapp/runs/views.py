from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from training.config import RunConfig
from webapp.runs import selectors
from webapp.runs.services import run_cancel, run_resume
from webapp.reviews.views import run_review_context
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role


def _live_context(run, user) -> dict:
    can_edit = user_has_role(user, run.experiment.project.team_id, Role.MEMBER)
    return {
        "run": run,
        "can_edit": can_edit,
        "resume_checkpoint": run.checkpoint_to_resume() if can_edit else None,
        "eta_seconds": run.eta_seconds(timezone.now()),
        "latest": selectors.latest_metrics(run, selectors.HEADLINE_METRICS),
        "rollouts": selectors.latest_rollouts(run),
        "log_lines": selectors.recent_log_lines(run),
        "checkpoints": selectors.checkpoints_on_disk(run),
    }


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.get_run_for_user(request.user, run_id)
    config_rows = [(f.name, run.config.get(f.name), f.metadata["help"])
                   for f in RunConfig.fields() if f.name in run.config]
    return render(request, "runs/run_detail.html",
                  {**run_review_context(run, request.user), **_live_context(run, request.user),
                   "config_rows": config_rows, "experiment": run.experiment,
                   "project": run.experiment.project})


@login_required
@require_GET
def run_live(request: HttpRequest, run_id: int) -> HttpResponse:
    """The polled fragment: status and progress, with the rollouts and log lines swapped
    out-of-band. A finished run's fragment carries no trigger, so polling stops by itself."""
    run = selectors.get_run_for_user(request.user, run_id)
    context = _live_context(run, request.user)
    # The rollout table is swapped only when a newer step arrived, so a reader is not
    # interrupted every poll.
    shown = request.GET.get("shown_step", "")
    latest = context["rollouts"][0].step if context["rollouts"] else ""
    return render(request, "runs/run_detail.html#live",
                  {**context, "oob": True, "swap_rollouts": str(latest) != shown})


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
        run.refresh_from_db()
        return render(request, "runs/run_detail.html#live",
                      {**_live_context(run, request.user), "oob": True, "swap_rollouts": True})
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
