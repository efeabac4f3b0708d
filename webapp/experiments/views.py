from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from webapp.experiments.forms import ExperimentForm
from webapp.experiments.models import ExperimentKind
from webapp.experiments.selectors import get_experiment_for_user
from webapp.experiments.services import experiment_create, experiment_update
from webapp.projects.selectors import get_project_for_user
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role


def _render_form(request: HttpRequest, form: ExperimentForm, context: dict) -> HttpResponse:
    """The page; to htmx, the form, or only the chosen algorithm's own settings when the
    algorithm menu asks for them (?algorithm=…)."""
    template = "experiments/experiment_form.html"
    if request.htmx:
        asked = request.method == "GET" and "algorithm" in request.GET
        template += "#algorithm-settings" if asked else "#experiment-form"
    return render(request, template, {"form": form, **context},
                  status=422 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def experiment_create_view(request: HttpRequest, project_id: int,
                           kind: str = ExperimentKind.TRAINING) -> HttpResponse:
    project = get_project_for_user(request.user, project_id, Role.MEMBER)
    form = ExperimentForm(request.POST or None, project=project, kind=kind,
                          algorithm=request.GET.get("algorithm"), switch_url=request.path)
    if request.method == "POST" and form.is_valid():
        experiment = experiment_create(
            project=project, author=request.user, name=form.cleaned_data["name"],
            description=form.cleaned_data["description"], config=form.config, kind=kind)
        return _redirect(request, experiment.get_absolute_url())
    return _render_form(request, form, {"project": project, "experiment": None})


@login_required
@require_http_methods(["GET", "POST"])
def experiment_edit(request: HttpRequest, experiment_id: int) -> HttpResponse:
    experiment = get_experiment_for_user(request.user, experiment_id, Role.MEMBER)
    if experiment.is_tracked:
        raise Http404("A tracked experiment has no settings to edit: its scripts log them.")
    form = ExperimentForm(request.POST or None, project=experiment.project, instance=experiment,
                          algorithm=request.GET.get("algorithm"), switch_url=request.path)
    if request.method == "POST" and form.is_valid():
        experiment_update(experiment=experiment, name=form.cleaned_data["name"],
                          description=form.cleaned_data["description"], config=form.config)
        return _redirect(request, experiment.get_absolute_url())
    return _render_form(request, form, {"project": experiment.project, "experiment": experiment})


@login_required
def experiment_detail(request: HttpRequest, experiment_id: int) -> HttpResponse:
    """The experiment's page (an evaluation's, for one). Its runs, or an evaluation's jobs with
    the form that launches one, come from the apps that keep them, through their template tags
    (runs, evaluations)."""
    experiment = get_experiment_for_user(request.user, experiment_id)
    template = ("experiments/evaluation_detail.html" if experiment.is_evaluation
                else "experiments/experiment_detail.html")
    return render(request, template, {
        "experiment": experiment, "project": experiment.project,
        "can_delete": user_has_role(request.user, experiment.project.team_id, Role.ADMIN)})


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
