"""The prompt-level comparison of two evaluation jobs: a GET page, so a comparison, a category
and a page of it are links. The evaluation page's "Compare prompts" sends the two jobs ticked
there (?jobs= twice), which are put in training order and redirected to ?a=…&b=…."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from webapp.projects.selectors import get_project_for_user
from webapp.runs.evaluation_compare import (
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
from webapp.runs.evaluations import dataset_label, dataset_names

PAGE_PROMPTS = 50
ONE_SIDE_SHOWN = 50  # prompts listed of those only one job evaluated; the rest are counted


@login_required
@require_GET
def evaluation_compare(request: HttpRequest, project_id: int) -> HttpResponse:
    """?a=<job id>&b=<job id> compares job B against job A; ?category= (a FILTERS key) shows one
    kind of prompt; ?page= pages through them. Without both jobs: the picker alone."""
    project = get_project_for_user(request.user, project_id)
    url = reverse("runs:evaluation_compare", args=[project.pk])
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
    return render(request, "runs/evaluation_compare.html", context,
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
