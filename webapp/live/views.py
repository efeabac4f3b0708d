"""The charts' data: a run's metrics as JSON (downsampled, for the run page's and the comparison's
charts, and their live updates) and as CSV (every point). The event stream is webapp.live.stream."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from webapp.common.inputs import query_step
from webapp.runs import selectors
from webapp.runs.metric_series import metrics_csv_chunks


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

