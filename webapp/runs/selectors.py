"""Reads for runs: access, chart series (downsampled), latest rollouts, log lines, checkpoints."""

from __future__ import annotations

import math
from collections import defaultdict

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.experiments.selectors import experiments_for_user
from webapp.runs.models import Checkpoint, LogLine, MetricPoint, Rollout, Run
from webapp.teams.models import Role
from webapp.teams.selectors import require_role

# Charts the run page shows first, in this order; any other recorded key is listed after them.
HEADLINE_METRICS = ["reward/mean", "kl/mean", "entropy/mean", "completion/length_mean"]
MAX_POINTS_PER_SERIES = 2000


def runs_for_user(user) -> QuerySet[Run]:
    return Run.objects.filter(experiment__in=experiments_for_user(user)).select_related(
        "experiment", "experiment__project", "launched_by")


def get_run_for_user(user, run_id: int, role: str = Role.VIEWER) -> Run:
    run = get_object_or_404(runs_for_user(user), pk=run_id)
    require_role(user, run.experiment.project.team_id, role)
    return run


def metric_keys(run: Run) -> list[str]:
    recorded = set(MetricPoint.objects.filter(run=run).values_list("key", flat=True).distinct())
    headline = [key for key in HEADLINE_METRICS if key in recorded]
    return headline + sorted(recorded - set(headline))


def metric_series(run: Run, keys: list[str], *, after_step: int = -1,
                  max_points: int = MAX_POINTS_PER_SERIES) -> dict[str, list[list[float]]]:
    """{key: [steps, values]} for steps > after_step, each series at most max_points long."""
    points = (MetricPoint.objects.filter(run=run, key__in=keys, step__gt=after_step)
              .order_by("key", "step").values_list("key", "step", "value"))
    series: dict[str, list[list[float]]] = defaultdict(lambda: [[], []])
    for key, step, value in points.iterator(chunk_size=5000):
        series[key][0].append(step)
        series[key][1].append(value)
    return {key: downsample_minmax(steps, values, max_points) for key, (steps, values)
            in series.items()}


def downsample_minmax(steps: list[float], values: list[float], max_points: int
                      ) -> list[list[float]]:
    """Keep the min and the max of each of max_points/2 buckets, in step order, so spikes survive.

    >>> downsample_minmax([1, 2, 3, 4, 5, 6], [0, 9, 1, 1, -5, 2], 4)
    [[1, 2, 5, 6], [0, 9, -5, 2]]
    """
    if len(steps) <= max_points:
        return [steps, values]
    buckets = max(1, max_points // 2)
    size = len(steps) / buckets
    out_steps: list[float] = []
    out_values: list[float] = []
    for b in range(buckets):
        lo, hi = int(b * size), int((b + 1) * size)
        if lo >= hi:
            continue
        window = range(lo, hi)
        i_min = min(window, key=values.__getitem__)
        i_max = max(window, key=values.__getitem__)
        for i in sorted({i_min, i_max}):
            out_steps.append(steps[i])
            out_values.append(values[i])
    return [out_steps, out_values]


def latest_rollouts(run: Run, *, limit: int = 32) -> list[Rollout]:
    """The rollouts of the last recorded step, best reward first within each group."""
    last = Rollout.objects.filter(run=run).order_by("-step").values_list("step", flat=True)[:1]
    return list(Rollout.objects.filter(run=run, step__in=list(last))
                .prefetch_related("annotations")
                .order_by("group", "-reward", "sample_index")[:limit])


def latest_metrics(run: Run, keys: list[str]) -> dict[str, float]:
    latest: dict[str, float] = {}
    for key in keys:
        value = (MetricPoint.objects.filter(run=run, key=key).order_by("-step")
                 .values_list("value", flat=True).first())
        if value is not None:
            latest[key] = value
    return latest


def recent_log_lines(run: Run, *, limit: int = 40) -> list[LogLine]:
    return list(reversed(LogLine.objects.filter(run=run).order_by("-time", "-id")[:limit]))


def checkpoints_on_disk(run: Run) -> list[tuple[Checkpoint, int | None]]:
    """Each checkpoint, newest first, with its size in bytes; None for a folder that is gone."""
    return [(checkpoint, checkpoint.size_on_disk())
            for checkpoint in Checkpoint.objects.filter(run=run).order_by("-step")]


def token_rows(token_data: dict | None) -> list[dict]:
    """One dict per completion token, with a 0-4 shade from its probability (4 = least likely),
    for the token view.

    >>> [(t["text"], t["shade"]) for t in token_rows(
    ...     {"text": ["7", "!"], "logprob": [-0.01, -3.0], "entropy": [0.1, 2.0]})]
    [('7', 0), ('!', 4)]
    """
    if not token_data:
        return []
    texts = token_data.get("text", [])
    advantage = token_data.get("advantage")
    if not isinstance(advantage, list):  # rollouts logged before advantages were per token
        token_data = {**token_data, "advantage": [advantage] * len(texts)}
    columns = {key: token_data.get(key) or [None] * len(texts)
               for key in ("logprob", "entropy", "kl", "advantage")}
    rows = []
    for i, text in enumerate(texts):
        logprob = columns["logprob"][i]
        probability = math.exp(logprob) if logprob is not None else 1.0
        rows.append({"text": text, "logprob": logprob, "entropy": columns["entropy"][i],
                     "kl": columns["kl"][i], "advantage": columns["advantage"][i],
                     "shade": min(4, int((1 - probability) * 5))})
    return rows
