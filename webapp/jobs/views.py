from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from webapp.jobs.examples import example_templates_add
from webapp.jobs.forms import LaunchForm, ParametersForm, TemplateForm
from webapp.jobs.models import JobTemplate
from webapp.jobs.parameters import SpecError
from webapp.jobs.selectors import (
    get_template_for_user,
    team_projects,
    team_templates,
    template_argv,
    template_parameters,
)
from webapp.jobs.services import (
    job_template_create,
    job_template_delete,
    job_template_update,
    script_run_launch,
)
from webapp.teams.models import Role
from webapp.teams.selectors import get_team_for_user, user_has_role


@login_required
def template_list(request: HttpRequest, team_id: int) -> HttpResponse:
    """A team's templates, for its members; `?project=` carries a project's choice on to the
    launch forms (the project page's "Launch from a template")."""
    team = get_team_for_user(request.user, team_id)
    return render(request, "jobs/template_list.html", {
        "team": team, "templates": team_templates(team),
        "project_id": request.GET.get("project", "") if request.GET.get("project", "").isdigit()
        else "",
        "is_admin": user_has_role(request.user, team.pk, Role.ADMIN),
        "can_launch": user_has_role(request.user, team.pk, Role.MEMBER)})


@login_required
@require_POST
def examples_add(request: HttpRequest, team_id: int) -> HttpResponse:
    team = get_team_for_user(request.user, team_id, Role.ADMIN)
    added = example_templates_add(team=team, user=request.user)
    messages.success(request, f"Added {', '.join(t.name for t in added)}." if added
                     else "The team has every example template already.")
    return redirect("jobs:list", team.pk)


def _template_form_page(request: HttpRequest, form: TemplateForm, *, team,
                        template: JobTemplate | None) -> HttpResponse:
    if request.method == "POST" and form.is_valid():
        try:
            if template is None:
                template = job_template_create(team=team, user=request.user,
                                               fields=form.cleaned_data)
            else:
                template = job_template_update(template=template, user=request.user,
                                               fields=form.cleaned_data)
        except SpecError as exc:
            form.errors_place(exc.errors)
        else:
            return redirect("jobs:detail", template.pk)
    return render(request, "jobs/template_form.html",
                  {"team": team, "form": form, "template": template},
                  status=422 if request.method == "POST" else 200)


@login_required
@require_http_methods(["GET", "POST"])
def template_create_view(request: HttpRequest, team_id: int) -> HttpResponse:
    """An admin's form for a new template; errors come back beside their fields (422), with
    everything typed kept."""
    team = get_team_for_user(request.user, team_id, Role.ADMIN)
    return _template_form_page(request, TemplateForm(request.POST or None), team=team,
                               template=None)


@login_required
@require_http_methods(["GET", "POST"])
def template_edit_view(request: HttpRequest, template_id: int) -> HttpResponse:
    template = get_template_for_user(request.user, template_id, Role.ADMIN)
    form = TemplateForm(request.POST or None, initial=TemplateForm.initial_of(template))
    return _template_form_page(request, form, team=template.team, template=template)


@login_required
@require_POST
def template_delete_view(request: HttpRequest, template_id: int) -> HttpResponse:
    template = get_template_for_user(request.user, template_id, Role.ADMIN)
    team_id = template.team_id
    job_template_delete(template=template, user=request.user)
    messages.success(request, f"Deleted the template {template.name}; its runs keep their "
                              "commands.")
    return redirect("jobs:list", team_id)


@login_required
def template_detail(request: HttpRequest, template_id: int) -> HttpResponse:
    template = get_template_for_user(request.user, template_id)
    return render(request, "jobs/template_detail.html", {
        "template": template, "team": template.team, "argv": template_argv(template),
        "parameters": template_parameters(template),
        "is_admin": user_has_role(request.user, template.team_id, Role.ADMIN),
        "can_launch": user_has_role(request.user, template.team_id, Role.MEMBER),
        "runs": template.runs.select_related("experiment__project").order_by("-created_at")[:20]})


@login_required
@require_http_methods(["GET", "POST"])
def template_launch_view(request: HttpRequest, template_id: int) -> HttpResponse:
    """The launch form generated from the template's parameters. A value that does not fit comes
    back with its reason beside it (422), every value kept; a launch goes to the new run."""
    template = get_template_for_user(request.user, template_id, Role.MEMBER)
    projects = team_projects(template.team)
    data = request.POST if request.method == "POST" else None
    initial = {"project": request.GET.get("project")} if request.GET.get("project", "").isdigit() \
        else {}
    form = LaunchForm(data, projects=projects, initial=initial)
    values = ParametersForm(data, parameters=template_parameters(template), prefix="p")
    if request.method == "POST" and form.is_valid() and values.is_valid():
        try:
            run = script_run_launch(
                template=template, project=form.cleaned_data["project"], user=request.user,
                values=values.cleaned_data, priority=form.cleaned_data["priority"],
                experiment_name=form.cleaned_data["experiment_name"])
        except SpecError as exc:
            for where in ("experiment_name", "priority"):
                if where in exc.errors:
                    form.add_error(where, exc.errors.pop(where))
            values.errors_place(exc.errors)
        except ValidationError as exc:
            form.add_error(None, " ".join(exc.messages))
        else:
            return redirect(run.get_absolute_url())
    return render(request, "jobs/template_launch.html", {
        "template": template, "team": template.team, "form": form, "values": values,
        "argv": template_argv(template)}, status=422 if request.method == "POST" else 200)
