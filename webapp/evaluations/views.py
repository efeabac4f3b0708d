"""Evaluation pages: launching a job (on a model, from the evaluation's page, or on a
checkpoint, from its run's page), a job's results as CSV or JSON, the prompt-level comparison of
two jobs, and the project's leaderboard with its exports.

The comparison is a GET page, so a comparison, a category and a page of it are links; the
evaluation page's "Compare prompts" sends the two jobs ticked there (?jobs= twice), which are put
in training order and redirected to ?a=…&b=…. Every view of the leaderboard is a GET URL too,
and its exports take the page's own parameters, so a download holds exactly the rows on
screen."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from webapp.evaluations.compare import (
    CATEGORIES,
    CHANGED,
    FILTERS,
    SOLVED_AT,
    NotComparable,
    compare_jobs,
    evaluated_step,
    in_training_order,
    job_choices,
    job_label,
    pick_job,
    with_texts,
)
from webapp.evaluations.export import export_csv as evaluation_export_csv
from webapp.evaluations.export import export_json as evaluation_export_json
from webapp.evaluations.leaderboard import (
    SOURCES,
    Leaderboard,
    Query,
    build_leaderboard,
    export_csv,
    export_json,
)
from webapp.evaluations.selectors import (
    dataset_label,
    dataset_names,
    project_evaluation_results,
)
from webapp.evaluations.forms import EvaluateForm
from webapp.experiments.models import ExperimentKind
from webapp.experiments.selectors import get_experiment_for_user
from webapp.projects.models import Project
from webapp.projects.selectors import get_project_for_user
from webapp.runs import selectors
from webapp.runs.services import evaluation_launch
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role

PAGE_PROMPTS = 50
ONE_SIDE_SHOWN = 50  # prompts listed of those only one job evaluated; the rest are counted

@login_required
@require_GET
def evaluation_compare(request: HttpRequest, project_id: int) -> HttpResponse:
    """?a=<job id>&b=<job id> compares job B against job A; ?category= (a FILTERS key) shows one
    kind of prompt; ?page= pages through them. Without both jobs: the picker alone."""
    project = get_project_for_user(request.user, project_id)
    url = reverse("evaluations:compare", args=[project.pk])
    errors: list[str] = []
    picked = {}
    try:
        ticked = request.GET.getlist("jobs")
        if ticked:
            if len(ticked) != 2:
                raise NotComparable(f"Tick exactly two jobs to compare (you ticked "
                                    f"{len(ticked)}).")
            a, b = in_training_order(*(pick_job(request.user, project, raw) for raw in ticked))
            return redirect(f"{url}?{urlencode({'a': a.pk, 'b': b.pk})}")
        for side in ("a", "b"):
            if request.GET.get(side):
                picked[side] = pick_job(request.user, project, request.GET[side])
    except NotComparable as exc:
        errors.append(str(exc))

    choices = job_choices(request.user, project)
    labels = {run.pk: label for run, label in choices}
    for run in picked.values():  # a job that has not succeeded is still compared, if linked
        if run.pk not in labels:
            labels[run.pk] = job_label(run, evaluated_step(run))
            choices.append((run, labels[run.pk]))
    context = {"project": project, "choices": choices, "errors": errors,
               "a": picked.get("a"), "b": picked.get("b"), "comparison": None}
    if not errors and len(picked) == 2:
        context.update(_comparison_context(request, picked["a"], picked["b"], labels))
    return render(request, "evaluations/compare.html", context,
                  status=400 if errors else 200)


def _comparison_context(request: HttpRequest, a, b, labels: dict[int, str]) -> dict:
    comparison = compare_jobs(a, b)
    category = request.GET.get("category", "")
    if category not in FILTERS:
        category = ""
    page = Paginator(comparison.rows(category), PAGE_PROMPTS).get_page(request.GET.get("page"))
    only_a, only_b = comparison.only_a[:ONE_SIDE_SHOWN], comparison.only_b[:ONE_SIDE_SHOWN]
    with_texts([*page.object_list, *only_a, *only_b])  # one query for what the page shows
    names = dataset_names(a.experiment.project)
    return {
        "comparison": comparison, "page": page, "category": category,
        "category_label": FILTERS[category],
        "categories": [(key, label, comparison.counts[key]) for key, label in CATEGORIES.items()],
        "changed": CHANGED, "changed_count": comparison.counts[CHANGED],
        "label_a": labels[a.pk], "label_b": labels[b.pk],
        "dataset_a": dataset_label(a, names), "dataset_b": dataset_label(b, names),
        "only_a": only_a, "only_b": only_b, "solved_at": SOLVED_AT,
    }


@login_required
@require_POST
def evaluation_launch_view(request: HttpRequest, experiment_id: int) -> HttpResponse:
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
@require_GET
def evaluation_export(request: HttpRequest, run_id: int, fmt: str) -> HttpResponse:
    """An evaluation job's results prompt by prompt, as CSV (a row per prompt) or JSON (with
    the recipe, the metrics and every sample)."""
    run = selectors.get_run_for_user(request.user, run_id)
    if not run.is_evaluation or fmt not in ("csv", "json"):
        raise Http404("Evaluation jobs export their results as .csv or .json.")
    if fmt == "csv":
        response = HttpResponse(evaluation_export_csv(run), content_type="text/csv; charset=utf-8")
    else:
        response = JsonResponse(evaluation_export_json(run),
                                json_dumps_params={"indent": 1, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="evaluation-job-{run.pk}.{fmt}"'
    return response


@login_required
@require_POST
def checkpoint_evaluate(request: HttpRequest, checkpoint_id: int) -> HttpResponse:
    """Queue a job of the chosen evaluation (POST `evaluation`: an evaluation of the same
    project) on this checkpoint and go to it; on a problem, back to the run with the reason."""
    checkpoint = selectors.get_checkpoint_for_user(request.user, checkpoint_id, Role.MEMBER)
    run = checkpoint.run
    evaluation = run.experiment.project.experiments.filter(
        kind=ExperimentKind.EVALUATION, pk=_int(request.POST.get("evaluation"))).first()
    target = run
    if evaluation is None:
        messages.error(request, "Choose one of this project's evaluations.")
    else:
        try:
            target = evaluation_launch(experiment=evaluation, user=request.user,
                                       checkpoint=checkpoint)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    return _redirect(request, target.get_absolute_url())


def _int(value: str | None) -> int | None:
    try:
        return int(value or "")
    except ValueError:
        return None


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
    template = "evaluations/leaderboard.html"
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


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
