from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from webapp.projects.selectors import get_project_for_user
from webapp.sweeps.definition import DefinitionError, definition_parse
from webapp.sweeps.forms import AxisFormSet, SweepForm
from webapp.sweeps.selectors import (
    best_trials,
    can_steer,
    get_sweep_for_user,
    importances,
    plot_data,
    project_sweeps,
    sweep_progress,
    sweep_trials,
)
from webapp.sweeps.services import sweep_cancel, sweep_create
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role


@login_required
@require_http_methods(["GET", "POST"])
def sweep_create_view(request: HttpRequest, project_id: int) -> HttpResponse:
    """The form; a definition that does not check comes back with each error next to its field
    or axis row (422), and nothing is created."""
    project = get_project_for_user(request.user, project_id, Role.MEMBER)
    initial = {"experiment": request.GET.get("experiment")}
    form = SweepForm(request.POST or None, project=project, initial=initial)
    axes = AxisFormSet(request.POST or None, prefix="axes")
    if request.method == "POST" and form.is_valid() and axes.is_valid():
        definition = form.definition()
        if not form.errors and not form.cleaned_data["definition_yaml"].strip():
            definition["axes"] = _axes_of(axes)
        if not form.errors and not any(row.errors for row in axes.forms):
            try:
                sweep = sweep_create(definition=definition_parse(definition, project=project),
                                     user=request.user)
            except DefinitionError as exc:
                form.errors_place(exc.errors, axes)
            except ValidationError as exc:
                form.add_error(None, " ".join(exc.messages))
            else:
                return redirect(sweep.get_absolute_url())
    invalid = request.method == "POST"
    return render(request, "sweeps/sweep_form.html",
                  {"project": project, "form": form, "axes": axes},
                  status=422 if invalid else 200)


def _axes_of(axes: AxisFormSet) -> dict:
    """The rows' axes; a setting given in two rows is an error on the second."""
    found: dict = {}
    for form in axes.forms:
        axis = form.axis()
        if axis is None:
            continue
        setting, spec = axis
        if setting in found:
            form.add_error("setting", f"{setting} has a row already")
        found[setting] = spec
    return found


@login_required
def sweep_detail(request: HttpRequest, sweep_id: int) -> HttpResponse:
    sweep = get_sweep_for_user(request.user, sweep_id)
    trials = sweep_trials(sweep)
    return render(request, "sweeps/sweep_detail.html", {
        "sweep": sweep, "project": sweep.project, "progress": sweep_progress(sweep, trials),
        "best": best_trials(sweep, trials), "plot": plot_data(sweep, trials),
        "importances": importances(sweep, trials), "can_steer": can_steer(sweep, request.user)})


@login_required
@require_POST
def sweep_cancel_view(request: HttpRequest, sweep_id: int) -> HttpResponse:
    sweep = get_sweep_for_user(request.user, sweep_id, Role.MEMBER)
    try:
        cancelled = sweep_cancel(sweep=sweep, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Cancelled the sweep and {cancelled} of its runs.")
    return redirect(sweep.get_absolute_url())


@login_required
def sweep_list(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_project_for_user(request.user, project_id)
    return render(request, "sweeps/sweep_list.html", {
        "project": project, "sweeps": project_sweeps(project),
        "can_create": user_has_role(request.user, project.team_id, Role.MEMBER)})
