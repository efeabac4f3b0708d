"""The run comparison page: a GET form that picks a project's runs, and its result (overlaid
charts, each metric's last values, the config diff), which htmx swaps in as the picks change."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.projects.selectors import get_project_for_user
from webapp.runs.compare import MAX_COMPARED, config_diff, last_values, picked_runs, project_runs


@login_required
@require_GET
def compare_runs(request: HttpRequest, project_id: int) -> HttpResponse:
    """?runs=<id> (repeated) picks the runs; ?only_diff=1 hides the settings they share."""
    project = get_project_for_user(request.user, project_id)
    picked = picked_runs(request.user, project, request.GET.getlist("runs"))
    config_rows = config_diff(picked)
    context = {
        "project": project,
        "choices": project_runs(request.user, project),
        "picked": picked,
        "picked_ids": {run.pk for run in picked},
        "config_rows": config_rows,
        "differing": sum(row.differs for row in config_rows),
        "metric_rows": last_values(picked),
        "only_diff": request.GET.get("only_diff") == "1",
        "max_compared": MAX_COMPARED,
    }
    template = "runs/compare.html#result" if request.htmx else "runs/compare.html"
    return render(request, template, context)
