from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from training.spec.config import RunConfig
from training.spec.evaluation_config import EvalConfig
from webapp.common.inputs import query_step
from webapp.experiments.models import ExperimentKind
from webapp.projects.deletion import deletion_summary
from webapp.projects.deletion_page import confirm_delete_response
from webapp.runs import selectors
from webapp.runs.evaluation_export import export_csv as evaluation_export_csv
from webapp.runs.evaluation_export import export_json as evaluation_export_json
from webapp.runs.live_feed import current_cursor
from webapp.runs.metric_series import metrics_csv_chunks
from webapp.runs.panels import live_context
from webapp.runs.services import (
    evaluation_launch,
    run_cancel,
    run_delete,
    run_delete_allowed,
    run_delete_check,
    run_deletion_plan,
    run_resume,
)
from webapp.reviews.views import run_review_context
from webapp.teams.models import Role


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.get_run_for_user(request.user, run_id)
    if run.is_tracked:  # the parameters its script logged, as they came
        config_rows = [(name, value, "") for name, value in sorted(run.config.items())]
    else:
        settings = EvalConfig if run.is_evaluation else RunConfig
        config_rows = [(f.name, run.config.get(f.name), f.metadata["help"])
                       for f in settings.fields() if f.name in run.config]
    # Read before the panels: the stream may then repeat a row they show, but never miss one.
    stream_cursor = current_cursor(run.pk).encode()
    return render(request, "runs/run_detail.html",
                  {**run_review_context(run, request.user), **live_context(run, request.user),
                   "config_rows": config_rows, "experiment": run.experiment,
                   "project": run.experiment.project, "stream_cursor": stream_cursor,
                   "can_delete": run_delete_allowed(run=run, user=request.user)})


def _asked_keys(request: HttpRequest, keys: list[str]) -> list[str]:
    """The run's keys named by ?keys= (repeated), in the run's order; all of them without it."""
    if "keys" not in request.GET:
        return keys
    asked = set(request.GET.getlist("keys"))
    return [key for key in keys if key in asked]


@login_required
@require_GET
def run_metrics(request: HttpRequest, run_id: int) -> JsonResponse:
    """Chart data: {"keys": every metric of the run, "active": whether points may still come,
    "width": the bucket width in steps (1: every point), "series": {key: [steps, values,
    wall times in Unix seconds]}}, downsampled by the database to about 2,000 points a series.
    ?after=S: only steps after S (a live chart's update); ?start=&end=: a step range (a zoomed
    chart's detail); ?keys= (repeated): only these metrics."""
    run = selectors.get_run_for_user(request.user, run_id)
    start, end, after = (query_step(request.GET, name) for name in ("start", "end", "after"))
    if after is not None:
        start = max(after + 1, start if start is not None else after + 1)
    keys = selectors.metric_keys(run)
    read = selectors.metric_series(run, _asked_keys(request, keys), start=start, end=end)
    return JsonResponse({"keys": keys, "active": not run.is_terminal, "width": read.width,
                         "series": read.series}, json_dumps_params={"separators": (",", ":")})


@login_required
@require_GET
def run_metrics_csv(request: HttpRequest, run_id: int) -> StreamingHttpResponse:
    """Every point of the run's metrics (or of ?keys=) as CSV, streamed: key, step, value,
    wall_time (ISO 8601, UTC)."""
    run = selectors.get_run_for_user(request.user, run_id)
    keys = _asked_keys(request, selectors.metric_keys(run))
    response = StreamingHttpResponse(metrics_csv_chunks(run.pk, keys),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-metrics.csv"'
    return response


@login_required
@require_POST
def run_cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = selectors.get_run_for_user(request.user, run_id, Role.MEMBER)
    run_cancel(run=run, user=request.user)
    if request.htmx:
        return render(request, "runs/run_detail.html#live", live_context(run, request.user))
    return redirect(run)


@login_required
@require_POST
def run_resume_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """Start a new run from this one's newest checkpoint and go to it; a run that cannot be
    resumed stays on its page with the reason."""
    run = selectors.get_run_for_user(request.user, run_id, Role.MEMBER)
    try:
        target = run_resume(run=run, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        target = run
    url = target.get_absolute_url()
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_http_methods(["GET", "POST"])
def run_delete_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """GET: what deleting the run removes, and the form that deletes it; POST: delete it, then
    go to its experiment. For an admin of the team, or the member who launched it."""
    run = selectors.get_run_for_user(request.user, run_id, Role.MEMBER)
    run_delete_check(run=run, user=request.user)
    page = {"what": f"{run.experiment.name} #{run.number}", "project": run.experiment.project,
            "back_url": run.get_absolute_url()}
    if request.method == "POST":
        try:
            plan = run_delete(run=run, user=request.user)
        except ValidationError as exc:
            return confirm_delete_response(request, plan=run_deletion_plan(run=run),
                                           refusals=exc.messages, **page)
        messages.success(request, f"Deleted {page['what']}: {deletion_summary(plan)}.")
        url = run.experiment.get_absolute_url()
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    return confirm_delete_response(request, plan=run_deletion_plan(run=run), **page)


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
    url = target.get_absolute_url()
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _int(value: str | None) -> int | None:
    try:
        return int(value or "")
    except ValueError:
        return None
