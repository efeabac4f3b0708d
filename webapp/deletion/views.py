"""The deletion pages of a run, an experiment, a dataset and a project: each a GET that shows
what deleting removes (templates/deletion/confirm_delete.html) and a POST that deletes, both
through `_deletion_page`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from webapp.datasets.selectors import dataset_experiments, get_dataset_for_user
from webapp.deletion.plans import DeletionPlan, deletion_summary
from webapp.deletion.services import (
    dataset_delete,
    dataset_deletion_plan,
    experiment_delete,
    experiment_deletion_plan,
    project_delete,
    project_deletion_plan,
    run_delete,
    run_delete_check,
    run_deletion_plan,
)
from webapp.experiments.selectors import get_experiment_for_user
from webapp.projects.models import Project
from webapp.projects.selectors import get_project_for_user
from webapp.runs.selectors import get_run_for_user
from webapp.teams.models import Role


@login_required
@require_http_methods(["GET", "POST"])
def run_delete_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """Delete the run, then go to its experiment. For an admin of the team, or the member who
    launched it."""
    run = get_run_for_user(request.user, run_id, Role.MEMBER)
    run_delete_check(run=run, user=request.user)
    what = f"{run.experiment.name} #{run.number}"
    return _deletion_page(
        request, what=what, deleted=what, project=run.experiment.project,
        back_url=run.get_absolute_url(), done_url=run.experiment.get_absolute_url(),
        plan=lambda: run_deletion_plan(run=run),
        delete=lambda: run_delete(run=run, user=request.user))


@login_required
@require_http_methods(["GET", "POST"])
def experiment_delete_view(request: HttpRequest, experiment_id: int) -> HttpResponse:
    """Delete the experiment (or evaluation) with its runs, then go to its project. For admins
    of the team."""
    experiment = get_experiment_for_user(request.user, experiment_id, Role.ADMIN)
    return _deletion_page(
        request, what=experiment.name, deleted=experiment.name, project=experiment.project,
        back_url=experiment.get_absolute_url(),
        done_url=experiment.project.get_absolute_url(),
        plan=lambda: experiment_deletion_plan(experiment=experiment),
        delete=lambda: experiment_delete(experiment=experiment, user=request.user))


@login_required
@require_http_methods(["GET", "POST"])
def dataset_delete_view(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """Delete the dataset, then go to the project's datasets. For admins of the team."""
    dataset = get_dataset_for_user(request.user, dataset_id, Role.ADMIN)
    experiments = [experiment.name for experiment in dataset_experiments(dataset)]
    notes = [f"{', '.join(experiments)} {'names' if len(experiments) == 1 else 'name'} this "
             f"dataset: {'it' if len(experiments) == 1 else 'they'} cannot launch until edited "
             f"to use another. Runs that trained on it keep its rows' file."] if experiments else []
    return _deletion_page(
        request, what=dataset.name, deleted=f"dataset {dataset.name}", project=dataset.project,
        back_url=dataset.get_absolute_url(), notes=notes,
        done_url=reverse("datasets:list", args=[dataset.project_id]),
        plan=lambda: dataset_deletion_plan(dataset=dataset),
        delete=lambda: dataset_delete(dataset=dataset, user=request.user))


@login_required
@require_http_methods(["GET", "POST"])
def project_delete_view(request: HttpRequest, project_id: int) -> HttpResponse:
    """Delete the project, once its name is typed, then go to the project list. For admins of
    its team."""
    project = get_project_for_user(request.user, project_id, Role.ADMIN)
    return _deletion_page(
        request, what=project.name, deleted=f"project {project.name}", project=project,
        back_url=project.get_absolute_url(), confirm_name=project.name,
        done_url=reverse("projects:list"),
        plan=lambda: project_deletion_plan(project=project),
        delete=lambda: project_delete(project=project, user=request.user))


def _deletion_page(request: HttpRequest, *, what: str, deleted: str, project: Project,
                   back_url: str, done_url: str, plan: Callable[[], DeletionPlan],
                   delete: Callable[[], DeletionPlan], notes: Sequence[str] = (),
                   confirm_name: str = "") -> HttpResponse:
    """GET: what deleting `what` removes (`plan()`), with the form that deletes it. POST:
    `delete()` (after `confirm_name` is typed, when there is one), then go to `done_url` saying
    what went; a deletion refused shows the page again with the reasons, with status 422."""
    page = {"what": what, "project": project, "back_url": back_url, "notes": notes,
            "confirm_name": confirm_name}
    if request.method != "POST":
        return _confirm_page(request, plan=plan(), **page)
    if confirm_name and request.POST.get("confirm_name", "").strip() != confirm_name:
        return _confirm_page(request, plan=plan(), **page, name_error=(
            "Type the project's name exactly, to show it is the one you mean."))
    try:
        done = delete()
    except ValidationError as exc:
        return _confirm_page(request, plan=plan(), refusals=exc.messages, **page)
    messages.success(request, f"Deleted {deleted}: {deletion_summary(done)}.")
    return HttpResponseClientRedirect(done_url) if request.htmx else redirect(done_url)


def _confirm_page(request: HttpRequest, *, plan: DeletionPlan,
                  refusals: Sequence[str] | None = None, name_error: str = "",
                  **page: object) -> HttpResponse:
    """The page (or, to htmx, its card) that says what deleting removes, with the form that
    deletes it; without it when the deletion is refused (`refusals`: the plan's, unless a POST
    was refused for other ones). 422 after a POST that did not delete."""
    template = ("deletion/confirm_delete.html#confirm" if request.htmx
                else "deletion/confirm_delete.html")
    return render(request, template, {
        **page, "plan": plan, "name_error": name_error,
        "refusals": plan.refusals if refusals is None else refusals,
    }, status=422 if request.method == "POST" else 200)
