"""Reads for runs: access, chart series (downsampled), latest rollouts, log lines, checkpoints."""

from __future__ import annotations

import math
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from webapp.experiments.selectors import experiments_for_user
from webapp.projects.models import Project
from webapp.runs.files import folder_bytes, run_folder
from webapp.runs.metric_series import SeriesRead, key_spans, read_series, recorded_keys
from webapp.runs.models import Checkpoint, LogLine, Rollout, Run
from webapp.teams.models import Role
from webapp.teams.selectors import (
    require_role,
    require_role_of,
    role_subquery,
    user_has_role,
)

# Charts the run page and the comparison show first, in this order (the pages hand the list to
# webapp/static/charts.js); any other recorded key is listed after them.
HEADLINE_METRICS = ["reward/mean", "kl/mean", "entropy/mean", "completion/length_mean"]
# The per-token values a rollout's token view can show: the policy's, and some algorithms' own
# (PRL's process term, GTPO's conflict tokens, KDRL's KL to the teacher).
TOKEN_VALUE_KEYS = ("logprob", "entropy", "kl", "advantage", "process", "conflict",
                    "teacher_kl")


def runs_for_user(user) -> QuerySet[Run]:
    return Run.objects.filter(experiment__in=experiments_for_user(user)).select_related(
        "experiment", "experiment__project", "launched_by")


def get_run_for_user(user, run_id: int, role: str = Role.VIEWER) -> Run:
    """The run, if the user is in its project's team (else 404) with `role` or higher (else
    403). One query: every API write and page of a run goes through here."""
    if not user.is_authenticated:
        raise Http404
    run = (Run.objects.select_related("experiment", "experiment__project", "launched_by")
           .annotate(user_role=role_subquery(user, "experiment__project__team"))
           .filter(pk=run_id, user_role__isnull=False).first())
    if run is None:
        raise Http404
    require_role_of(run.user_role, role)
    return run


def can_edit_run(run: Run, user) -> bool:
    """Whether `user` may act on the run (cancel, resume, tag, evaluate a checkpoint): a member
    of its team."""
    return user_has_role(user, run.experiment.project.team_id, Role.MEMBER)


def get_checkpoint_for_user(user, checkpoint_id: int, role: str = Role.VIEWER) -> Checkpoint:
    checkpoint = get_object_or_404(
        Checkpoint.objects.filter(run__in=runs_for_user(user)).select_related(
            "run__experiment__project"), pk=checkpoint_id)
    require_role(user, checkpoint.run.experiment.project.team_id, role)
    return checkpoint


def metric_keys(run: Run) -> list[str]:
    """Every metric the run recorded: the headline ones first, in their order, then the rest."""
    recorded = recorded_keys(run.pk)
    headline = [key for key in HEADLINE_METRICS if key in recorded]
    return headline + [key for key in recorded if key not in headline]


def metric_series(run: Run, keys: list[str], *, start: int | None = None,
                  end: int | None = None) -> SeriesRead:
    """Chart series of `keys` with start <= step <= end, about 2,000 points each at most; see
    webapp.runs.metric_series."""
    return read_series(run, keys, start=start, end=end)


def latest_rollouts(run: Run, *, limit: int = 32) -> list[Rollout]:
    """The rollouts of the last recorded step, best reward first within each group."""
    last = Rollout.objects.filter(run=run).order_by("-step").values_list("step", flat=True)[:1]
    return list(Rollout.objects.filter(run=run, step__in=list(last))
                .prefetch_related("annotations")
                .order_by("group", "-reward", "sample_index")[:limit])


def latest_metrics(run: Run, keys: list[str]) -> dict[str, float]:
    """Each of `keys`' last value, in that order; keys the run has not logged are left out. One
    query whatever the number of keys: the live panels ask for it every second."""
    spans = key_spans(run.pk, keys)
    return {key: spans[key].last[1] for key in keys if key in spans}


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
    columns = {key: _numbers(token_data.get(key), len(texts)) for key in TOKEN_VALUE_KEYS}
    rows = []
    for i, text in enumerate(texts):
        logprob = columns["logprob"][i]
        # A script may send a log-prob above 0, which is no probability and whose exp()
        # overflows past ~709; such a token, or a NaN one, is shown as likely.
        probability = math.exp(logprob) if logprob is not None and logprob <= 0 else 1.0
        rows.append({"text": text, **{key: values[i] for key, values in columns.items()},
                     "shade": min(4, int((1 - probability) * 5))})
    return rows


def _numbers(values: Any, count: int) -> list[float | None]:
    """`count` per-token values: a stored list's numbers, None for anything else or missing."""
    if not isinstance(values, list):
        return [None] * count
    return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
            for v in values[:count]] + [None] * max(count - len(values), 0)


def project_runs_bytes(project: Project) -> int:
    """Bytes in the folders of the project's runs, checkpoints included (its part of the
    project's disk use: webapp.projects.disk_use)."""
    return sum(folder_bytes(run_folder(run_id, created_at)) for run_id, created_at in
               Run.objects.filter(experiment__project=project).values_list("pk", "created_at"))
