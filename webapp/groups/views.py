"""The group page (runs grouped, each group's mean and band per metric), its charts' series, and
the statistics page that compares groups with rliable."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.groups import selectors
from webapp.groups.aligned import BANDS, REDUCES, group_chart
from webapp.groups.forms import DEFAULT_K, SeriesForm, StatisticsForm
from webapp.groups.grouping import GROUPINGS, MAX_KEYS, MAX_PICKED
from webapp.groups.statistics import NORMALISE, groups_statistics
from webapp.projects.selectors import get_project_for_user


@login_required
@require_GET
def groups_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The project's runs in groups (?by=seed|settings|tag, ?key=<setting> for settings), the
    groups picked for the charts (?group=<id>, repeated; all when none), and a chart per
    metric of each group's mean with a band."""
    project = get_project_for_user(request.user, project_id)
    view = selectors.grouped_view(request.user, project, request.GET)
    context = {"project": project, "view": view, "groupings": GROUPINGS, "bands": BANDS,
               "reduces": REDUCES, "max_keys": MAX_KEYS, "max_picked": MAX_PICKED,
               "metrics": selectors.metrics_of(view.picked) if view.picked else [],
               "grouping_query": _query(request, keep=("by", "key", "group"))}
    template = "groups/groups.html#result" if request.htmx else "groups/groups.html"
    return render(request, template, context)


@login_required
@require_GET
def group_series(request: HttpRequest, project_id: int) -> JsonResponse:
    """One metric's chart of the picked groups: the aligned steps, and per group the mean, the
    band asked for and how many runs each point averages (webapp.groups.aligned)."""
    project = get_project_for_user(request.user, project_id)
    view = selectors.grouped_view(request.user, project, request.GET)
    form = SeriesForm(request.GET)
    if view.error or not form.is_valid():
        message = view.error or "; ".join(f"{field}: {' '.join(errors)}"
                                          for field, errors in form.errors.items())
        return JsonResponse({"error": message}, status=400)
    band = form.cleaned_data["band"] or "std"
    reduce = form.cleaned_data["reduce"] or "last"
    chart = group_chart(view.picked, form.cleaned_data["metric"], band=band, reduce=reduce)
    return JsonResponse(chart.as_json(band, reduce))


@login_required
@require_GET
def statistics_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Groups compared on a metric (or several as tasks): per group n, mean, IQM and their
    bootstrap intervals, against a baseline the difference of means and the probability of
    improvement, performance profiles for several metrics; ?format=csv|json exports the
    table."""
    project = get_project_for_user(request.user, project_id)
    view = selectors.grouped_view(request.user, project, request.GET)
    form = StatisticsForm(request.GET or None)
    available = selectors.metrics_of(view.picked) if view.picked else []
    chosen = [key for key in dict.fromkeys(request.GET.getlist("metric")) if key]
    unknown = [key for key in chosen if key not in available]
    statistics, error = None, view.error
    if chosen and not unknown and not error and (form.is_bound and form.is_valid()):
        baseline = next((g for g in view.picked if g.id == form.cleaned_data["baseline"]),
                        None)
        try:
            statistics = groups_statistics(
                view.picked, chosen, form.reading(), baseline=baseline,
                normalise=form.cleaned_data["normalise"] or "raw", profile=len(chosen) > 1)
        except ValidationError as exc:
            error = " ".join(exc.messages)
    export = request.GET.get("format")
    if statistics is not None and export == "json":
        response = JsonResponse(statistics.as_json())
        response["Content-Disposition"] = 'attachment; filename="statistics.json"'
        return response
    if statistics is not None and export == "csv":
        response = HttpResponse(statistics.as_csv(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="statistics.csv"'
        return response
    context = {
        "project": project, "view": view, "form": form, "groupings": GROUPINGS,
        "max_keys": MAX_KEYS, "max_picked": MAX_PICKED, "available": available, "chosen": chosen, "unknown": unknown,
        "statistics": statistics, "error": error, "normalisations": NORMALISE,
        "default_k": DEFAULT_K,
        "plot": _plot(statistics) if statistics else None,
        "export_query": _query(request, drop=("format",)),
    }
    return render(request, "groups/statistics.html", context)


def _plot(statistics) -> dict:
    """What groups.js draws: each group's mean and IQM with their intervals, and the profile."""
    return {"groups": [{"name": row.group.name, "mean": row.mean, "mean_ci": row.mean_ci,
                        "iqm": row.iqm, "iqm_ci": row.iqm_ci} for row in statistics.rows],
            "profile": statistics.profile}


def _query(request: HttpRequest, *, keep: tuple[str, ...] = (),
           drop: tuple[str, ...] = ()) -> str:
    """The page's query string with only `keep` (or without `drop`), for links that carry the
    same grouping."""
    query = request.GET.copy()
    for name in list(query):
        if (keep and name not in keep) or name in drop:
            del query[name]
    return query.urlencode()
