"""The run page and what it does to a run: launch (from its experiment's page), cancel, resume;
and the comparison of a project's runs.

The run page is composed of other apps' parts through their template tags: the live panels
(live), the review bar and comments (reviews). Deleting a run is webapp.deletion's page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from webapp.experiments.selectors import get_experiment_for_user
from webapp.projects.selectors import get_project_for_user
from webapp.runs import selectors
from webapp.runs.compare import MAX_COMPARED, config_diff, last_values, picked_runs, project_runs
from webapp.runs.config_table import config_table
from webapp.runs.services import run_cancel, run_delete_allowed, run_launch, run_resume
from webapp.teams.models import Role


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.get_run_for_user(request.user, run_id)
    return render(request, "runs/run_detail.html", {
        "run": run, "experiment": run.experiment, "project": run.experiment.project,
        "config": config_table(run), "can_edit": selectors.can_edit_run(run, request.user),
        "can_delete": run_delete_allowed(run=run, user=request.user)})


@login_required
@require_POST
def run_launch_view(request: HttpRequest, experiment_id: int) -> HttpResponse:
    """Queue a run of the experiment's current config and go to it; on a problem, back to the
    experiment with the reason."""
    experiment = get_experiment_for_user(request.user, experiment_id, Role.MEMBER)
    try:
        target = run_launch(experiment=experiment, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        target = experiment
    return _redirect(request, target.get_absolute_url())


@login_required
@require_POST
def run_cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """Cancel the run; htmx gets the run page's status panel back (the live tag run_live_status),
    everything else the run page."""
    run = selectors.get_run_for_user(request.user, run_id, Role.MEMBER)
    run_cancel(run=run, user=request.user)
    if request.htmx:
        return render(request, "runs/_live_status.html",
                      {"run": run, "can_edit": selectors.can_edit_run(run, request.user)})
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
    return _redirect(request, target.get_absolute_url())


@login_required
@require_GET
def compare_runs(request: HttpRequest, project_id: int) -> HttpResponse:
    """The run comparison page: a GET form that picks a project's runs (?runs=<id>, repeated;
    ?only_diff=1 hides the settings they share), and its result (overlaid charts, each metric's
    last values, the config diff), which htmx swaps in as the picks change."""
    project = get_project_for_user(request.user, project_id)
    picked = picked_runs(request.user, project, request.GET.getlist("runs"))
    config_rows = config_diff(picked)
    metric_rows = last_values(picked)
    context = {
        "project": project,
        "choices": project_runs(request.user, project),
        "picked": picked,
        "picked_ids": {run.pk for run in picked},
        "config_rows": config_rows,
        "differing": sum(row.differs for row in config_rows),
        "metric_rows": metric_rows,
        "chart_keys": [row.key for row in metric_rows],
        "only_diff": request.GET.get("only_diff") == "1",
        "max_compared": MAX_COMPARED,
        "headline_metrics": selectors.HEADLINE_METRICS,
    }
    template = "runs/compare.html#result" if request.htmx else "runs/compare.html"
    return render(request, template, context)


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
