"""The project leaderboard page and its CSV and JSON exports. Every view of it is a GET URL;
the exports take the page's own parameters, so a download holds exactly the rows on screen."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from webapp.projects.models import Project
from webapp.projects.selectors import get_project_for_user
from webapp.runs.evaluations import project_evaluation_results
from webapp.runs.leaderboard import (
    SOURCES,
    Leaderboard,
    Query,
    build_leaderboard,
    export_csv,
    export_json,
)
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role


def _leaderboard(request: HttpRequest, project: Project) -> Leaderboard:
    return build_leaderboard(project_evaluation_results(project), Query.from_params(request.GET))


@login_required
@require_GET
def leaderboard(request: HttpRequest, project_id: int) -> HttpResponse:
    """?dataset=, ?source=jobs, ?best=1 filter; ?sort=<column>&order=asc|desc order the rows
    within each dataset. htmx requests get the table alone."""
    project = get_project_for_user(request.user, project_id)
    board = _leaderboard(request, project)
    context = {"project": project, "board": board, "query": board.query.urlencode(),
               "sources": SOURCES,
               # the pick, model, metrics, prompts × samples, source, when
               "column_count": len(board.metric_keys) + 5,
               "can_edit": user_has_role(request.user, project.team_id, Role.MEMBER)}
    template = "runs/leaderboard.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#table"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def leaderboard_export(request: HttpRequest, project_id: int, fmt: str) -> HttpResponse:
    """The rows of the leaderboard under the same parameters, as leaderboard.csv or .json."""
    if fmt not in ("csv", "json"):
        raise Http404("The leaderboard exports as .csv or .json.")
    project = get_project_for_user(request.user, project_id)
    board = _leaderboard(request, project)
    if fmt == "csv":
        response = HttpResponse(export_csv(board), content_type="text/csv; charset=utf-8")
    else:
        response = JsonResponse(export_json(board),
                                json_dumps_params={"indent": 1, "ensure_ascii": False})
    name = slugify(project.name) or f"project-{project.pk}"
    response["Content-Disposition"] = f'attachment; filename="{name}-leaderboard.{fmt}"'
    return response
