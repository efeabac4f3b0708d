from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from webapp.common.inputs import MalformedJson, json_parse
from webapp.projects.disk_use import project_disk_use
from webapp.projects.forms import ProjectForm, ProjectLimitForm
from webapp.projects.selectors import get_project_for_user, projects_with_stats
from webapp.projects.services import (
    project_chart_layout_save,
    project_create,
    project_limit_set,
)
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role


@login_required
@require_http_methods(["GET", "POST"])
def project_list(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        project = project_create(user=request.user, **form.cleaned_data)
        return redirect(project)
    projects = projects_with_stats(request.user).order_by("team__name", "name")
    template = "projects/project_list.html#project-form" if request.htmx else \
        "projects/project_list.html"
    status = 422 if form.errors else 200
    return render(request, template, {"projects": projects, "form": form}, status=status)


@login_required
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's page. Its experiments and evaluations, and its recent activity, come from
    the apps that keep them, through their template tags (experiments, reviews)."""
    project = get_project_for_user(request.user, project_id)
    return render(request, "projects/project_detail.html", {
        "project": project,
        "can_edit": user_has_role(request.user, project.team_id, Role.MEMBER),
        "can_delete": user_has_role(request.user, project.team_id, Role.ADMIN),
        "disk_use": project_disk_use(project),
    })


@login_required
@require_POST
def project_chart_layout(request: HttpRequest, project_id: int) -> HttpResponse:
    """Save how the project's chart panels are arranged (members; viewers 403, outsiders 404).
    A JSON body, {"panels": [{"key", "pinned", "size"}, …]}, is answered with the layout as
    stored, or 400 {"error": …}. A form posts `layout` (that JSON as text) or `reset`, and goes
    back to `next`."""
    project = get_project_for_user(request.user, project_id, Role.MEMBER)
    as_json = request.content_type == "application/json"
    try:
        if as_json:
            layout = json_parse(request.body)
        elif "reset" in request.POST:
            layout = {"panels": []}
        else:
            layout = json_parse(request.POST.get("layout", "").encode())
        stored = project_chart_layout_save(project=project, user=request.user, layout=layout)
    except (MalformedJson, ValidationError) as exc:
        message = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
        if as_json:
            return JsonResponse({"error": message}, status=400)
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
    if as_json:
        return JsonResponse({"layout": stored})
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()},
                                           require_https=request.is_secure()):
        back = project.get_absolute_url()
    return redirect(back)


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's settings, for admins of its team: how many of its runs run at once."""
    project = get_project_for_user(request.user, project_id, Role.ADMIN)
    form = ProjectLimitForm(request.POST or None,
                            initial={"max_concurrent_runs": project.max_concurrent_runs})
    if request.method == "POST" and form.is_valid():
        limit = form.cleaned_data["max_concurrent_runs"]
        project_limit_set(project=project, user=request.user, max_concurrent_runs=limit)
        messages.success(request, f"At most {limit} runs at once." if limit is not None
                         else "No limit on runs at once.")
        return redirect("projects:settings", project.pk)
    return render(request, "projects/project_settings.html", {"project": project, "form": form},
                  status=422 if form.errors else 200)


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness and database reachability, for container health checks."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")
