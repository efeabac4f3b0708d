from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from webapp.experiments.forms import EvaluateForm, ExperimentForm
from webapp.experiments.models import ExperimentKind
from webapp.experiments.selectors import get_experiment_for_user
from webapp.experiments.services import (
    experiment_create,
    experiment_delete,
    experiment_deletion_plan,
    experiment_update,
)
from webapp.projects.deletion import deletion_summary
from webapp.projects.deletion_page import confirm_delete_response
from webapp.projects.selectors import get_project_for_user
from webapp.runs.evaluations import evaluation_jobs
from webapp.runs.selectors import runs_for_user
from webapp.runs.services import evaluation_launch, run_launch
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role


def _render_form(request: HttpRequest, form: ExperimentForm, context: dict) -> HttpResponse:
    template = "experiments/experiment_form.html"
    if request.htmx:
        template += "#experiment-form"
    return render(request, template, {"form": form, **context},
                  status=422 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def experiment_create_view(request: HttpRequest, project_id: int,
                           kind: str = ExperimentKind.TRAINING) -> HttpResponse:
    project = get_project_for_user(request.user, project_id, Role.MEMBER)
    form = ExperimentForm(request.POST or None, project=project, kind=kind)
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
    form = ExperimentForm(request.POST or None, project=experiment.project, instance=experiment)
    if request.method == "POST" and form.is_valid():
        experiment_update(experiment=experiment, name=form.cleaned_data["name"],
                          description=form.cleaned_data["description"], config=form.config)
        return _redirect(request, experiment.get_absolute_url())
    return _render_form(request, form, {"project": experiment.project, "experiment": experiment})


@login_required
def experiment_detail(request: HttpRequest, experiment_id: int) -> HttpResponse:
    experiment = get_experiment_for_user(request.user, experiment_id)
    runs = runs_for_user(request.user).filter(experiment=experiment)
    context = {"experiment": experiment, "project": experiment.project, "runs": runs,
               "can_delete": user_has_role(request.user, experiment.project.team_id,
                                           Role.ADMIN)}
    if not experiment.is_evaluation:
        return render(request, "experiments/experiment_detail.html", context)
    runs = runs.select_related("evaluated_checkpoint__run__experiment")
    context.update(jobs=evaluation_jobs(runs),
                   evaluate_form=EvaluateForm(project=experiment.project))
    return render(request, "experiments/evaluation_detail.html", context)


@login_required
@require_POST
def experiment_evaluate(request: HttpRequest, experiment_id: int) -> HttpResponse:
    """Queue an evaluation job on the chosen checkpoint or model."""
    experiment = get_experiment_for_user(request.user, experiment_id, Role.MEMBER)
    form = EvaluateForm(request.POST, project=experiment.project)
    if not form.is_valid():
        messages.error(request, " ".join(m for errors in form.errors.values() for m in errors))
        return _redirect(request, experiment.get_absolute_url())
    try:
        run = evaluation_launch(experiment=experiment, user=request.user,
                                model=form.cleaned_data["model"],
                                checkpoint=form.cleaned_data["checkpoint"])
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return _redirect(request, experiment.get_absolute_url())
    return _redirect(request, run.get_absolute_url())


@login_required
@require_POST
def experiment_launch(request: HttpRequest, experiment_id: int) -> HttpResponse:
    experiment = get_experiment_for_user(request.user, experiment_id, Role.MEMBER)
    try:
        run = run_launch(experiment=experiment, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return _redirect(request, experiment.get_absolute_url())
    return _redirect(request, run.get_absolute_url())


@login_required
@require_http_methods(["GET", "POST"])
def experiment_delete_view(request: HttpRequest, experiment_id: int) -> HttpResponse:
    """GET: what deleting the experiment (or evaluation) removes, and the form that deletes it;
    POST: delete it, then go to its project. For admins of the team."""
    experiment = get_experiment_for_user(request.user, experiment_id, Role.ADMIN)
    page = {"what": experiment.name, "project": experiment.project,
            "back_url": experiment.get_absolute_url()}
    if request.method == "POST":
        try:
            plan = experiment_delete(experiment=experiment, user=request.user)
        except ValidationError as exc:
            return confirm_delete_response(
                request, plan=experiment_deletion_plan(experiment=experiment),
                refusals=exc.messages, **page)
        messages.success(request, f"Deleted {experiment.name}: {deletion_summary(plan)}.")
        return _redirect(request, experiment.project.get_absolute_url())
    return confirm_delete_response(request, plan=experiment_deletion_plan(experiment=experiment),
                                   **page)


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
