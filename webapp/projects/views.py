from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from webapp.experiments.models import ExperimentKind
from webapp.experiments.selectors import experiments_for_user
from webapp.projects.deletion import deletion_summary
from webapp.projects.deletion_page import confirm_delete_response
from webapp.projects.forms import ProjectForm
from webapp.projects.selectors import (
    get_project_for_user,
    project_disk_use,
    projects_with_stats,
)
from webapp.projects.services import project_create, project_delete, project_deletion_plan
from webapp.reviews.selectors import activity_for_project
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
    project = get_project_for_user(request.user, project_id)
    definitions = (experiments_for_user(request.user).filter(project=project)
                   .prefetch_related("runs"))
    return render(request, "projects/project_detail.html", {
        "project": project,
        "experiments": definitions.exclude(kind=ExperimentKind.EVALUATION),
        "evaluations": definitions.filter(kind=ExperimentKind.EVALUATION),
        "can_edit": user_has_role(request.user, project.team_id, Role.MEMBER),
        "can_delete": user_has_role(request.user, project.team_id, Role.ADMIN),
        "activities": activity_for_project(project, limit=10),
        "disk_use": project_disk_use(project),
    })


@login_required
@require_http_methods(["GET", "POST"])
def project_delete_view(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET: what deleting the project removes, and the form that deletes it once its name is
    typed; POST: delete it, then go to the project list. For admins of its team."""
    project = get_project_for_user(request.user, project_id, Role.ADMIN)
    page = {"what": project.name, "project": project, "back_url": project.get_absolute_url(),
            "confirm_name": project.name}
    if request.method == "POST":
        if request.POST.get("confirm_name", "").strip() != project.name:
            return confirm_delete_response(
                request, plan=project_deletion_plan(project=project),
                name_error="Type the project's name exactly, to show it is the one you mean.",
                **page)
        try:
            plan = project_delete(project=project, user=request.user)
        except ValidationError as exc:
            return confirm_delete_response(request, plan=project_deletion_plan(project=project),
                                           refusals=exc.messages, **page)
        messages.success(request, f"Deleted project {project.name}: {deletion_summary(plan)}.")
        url = reverse("projects:list")
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    return confirm_delete_response(request, plan=project_deletion_plan(project=project), **page)


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness and database reachability, for container health checks."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")
