"""Writes for runs: launch, resume, the status state machine, cancel, and ingestion of what a run
reports.

Every status change is a conditional UPDATE (`run_transition`), so a run is claimed by one worker
at most, and a cancel that races with a finishing run leaves exactly one of the two outcomes.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from itertools import chain, islice
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max
from django.utils import timezone

from training.spec.config import ConfigError, RunConfig
from training.spec.evaluation_config import EvalConfig
from training.spec.model_refs import RefKind, parse_model_ref
from webapp.common.inputs import storable_json, storable_text
from webapp.datasets.models import DatasetKind
from webapp.datasets.selectors import dataset_file_for_run
from webapp.experiments.models import Experiment, ExperimentKind
from webapp.projects.activity import Verb, activity
from webapp.runs.broker import broker_connection, queue_depth, run_send
from webapp.runs.files import run_folder
from webapp.runs.model_sources import config_for_worker, config_models_check
from webapp.runs.models import (
    ALLOWED_TRANSITIONS,
    METRIC_KEY_MAX_LENGTH,
    RESUMABLE_STATUSES,
    TERMINAL_STATUSES,
    Checkpoint,
    LogLine,
    MetricPoint,
    Rollout,
    Run,
    RunStatus,
)
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role

logger = logging.getLogger(__name__)

_ACTIVE = [RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING]


def run_queue_for(config: dict[str, Any]) -> str:
    """The Celery queue a run goes to: a run that asks for CUDA waits for a GPU worker."""
    if config.get("device") == "cuda":
        return "gpu"
    if config.get("device") == "cpu":
        return "cpu"
    return settings.RLAB_RUN_QUEUE


def run_launch(*, experiment: Experiment, user) -> Run:
    """Create a queued Run from the experiment's current config and enqueue it once committed."""
    if experiment.is_evaluation:
        raise ValidationError("An evaluation runs on a model or checkpoint: choose one.")
    if experiment.is_tracked:
        raise ValidationError(f"{experiment.name} is tracked: its runs are logged by scripts "
                              "that run elsewhere (the SDK, an MLflow client), not launched.")
    try:
        config = RunConfig.from_dict(experiment.config).to_dict()
    except ConfigError as exc:
        raise ValidationError(f"The experiment's config cannot run: {exc}") from exc
    _models_check(project_id=experiment.project_id, config=config, config_class=RunConfig,
                  what="The experiment's config cannot run")
    if config["dataset"]:
        # The experiment names one of its project's datasets; the run records that dataset's
        # file, whose name is its content hash, so the run keeps the exact rows it trained on.
        kind = DatasetKind.PREFERENCES if config["algorithm"] == "dpo" else DatasetKind.PROMPTS
        config["dataset"] = dataset_file_for_run(project=experiment.project,
                                                 reference=config["dataset"], kind=kind)
    return _run_create(experiment=experiment, config=config, user=user, verb=Verb.LAUNCHED)


def evaluation_launch(*, experiment: Experiment, user, model: str = "",
                      checkpoint: Checkpoint | None = None) -> Run:
    """Queue an evaluation job: the evaluation `experiment`'s config on `checkpoint` (a
    checkpoint of a run in the same project, its folder still there) or on `model` (a model
    reference: built-in, checkpoint:<id>, local:<name> or a hub id)."""
    if not experiment.is_evaluation:
        raise ValidationError(f"{experiment.name} is a training experiment, not an evaluation.")
    if checkpoint is not None:
        if checkpoint.run.experiment.project_id != experiment.project_id:
            raise ValidationError("That checkpoint belongs to another project.")
        model = f"checkpoint:{checkpoint.pk}"
    if not model.strip():
        raise ValidationError("Choose a checkpoint, or give a model to evaluate.")
    try:
        config = EvalConfig.from_dict({**experiment.config, "model": model.strip()}).to_dict()
    except ConfigError as exc:
        raise ValidationError(f"The evaluation cannot run: {exc}") from exc
    _models_check(project_id=experiment.project_id, config=config, config_class=EvalConfig,
                  what="The evaluation cannot run")
    reference = parse_model_ref(config["model"])
    if reference.kind == RefKind.CHECKPOINT:  # named by reference: the job still records it
        checkpoint = Checkpoint.objects.select_related("run__experiment").get(
            pk=reference.checkpoint_id)
    if config["dataset"]:
        config["dataset"] = dataset_file_for_run(project=experiment.project,
                                                 reference=config["dataset"])
    what = str(checkpoint) if checkpoint is not None else config["model"]
    return _run_create(experiment=experiment, config=config, user=user, verb=Verb.LAUNCHED,
                       detail=f"on {what}", evaluated_checkpoint=checkpoint)


def _models_check(*, project_id: int, config: dict[str, Any], config_class, what: str) -> None:
    """ValidationError starting with `what` unless the project's runs can load every model the
    config names (webapp.runs.model_sources)."""
    try:
        config_models_check(project_id=project_id, config=config, config_class=config_class)
    except ValidationError as exc:
        raise ValidationError(f"{what}: {'; '.join(exc.messages)}") from None


def tracked_experiment_get_or_create(*, project, user, name: str) -> Experiment:
    """The project's tracked experiment called `name`, created on first use. ValidationError if
    a training or evaluation experiment has that name."""
    name = name.strip()[:120]
    if not name:
        raise ValidationError("An experiment needs a name.")
    experiment, _ = Experiment.objects.get_or_create(
        project=project, name=name,
        defaults={"kind": ExperimentKind.TRACKED, "config": {}, "author": user})
    if not experiment.is_tracked:
        raise ValidationError(f"{name!r} is a {experiment.kind} experiment of this project, "
                              f"launched from rlab: log to another name.")
    return experiment


def tracked_run_create(*, experiment: Experiment, user, name: str = "",
                       params: dict[str, str] | None = None, tags: dict[str, str] | None = None,
                       started_at: datetime | None = None, client_key: str = "") -> Run:
    """A run of a tracked experiment, running from the start: its script logs to it (metrics,
    rollouts, parameters, tags) and ends it. No worker ever claims it.

    `client_key`, made up by the script for this run, makes the call safe to repeat: the
    experiment's run created with that key is returned as it is, so a retry after a lost answer
    does not start a second run."""
    if not experiment.is_tracked:
        raise ValidationError(f"{experiment.name} is a {experiment.kind} experiment: launch it "
                              f"instead.")
    started = started_at or timezone.now()
    with transaction.atomic():
        if client_key:
            # Two tries at once with one key wait here for each other; the second finds the run.
            Experiment.objects.select_for_update().filter(pk=experiment.pk).first()
            created = experiment.runs.filter(client_key=client_key).first()
            if created is not None:
                return created
        return _run_create(experiment=experiment, config=dict(params or {}), user=user,
                           verb=Verb.LAUNCHED, detail="tracked", enqueue=False,
                           status=RunStatus.RUNNING, name=name.strip()[:250],
                           tracked_tags=dict(tags or {}), client_key=client_key,
                           started_at=started, running_since=started,
                           heartbeat_at=timezone.now())


def tracked_run_log_params(*, run_id: int, params: dict[str, str]) -> None:
    """Add parameters to a tracked run's config. A parameter keeps its first value, as in
    MLflow: logging it again with another value is a ValidationError, and nothing is stored."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        changed = {key: (run.config[key], value) for key, value in params.items()
                   if key in run.config and run.config[key] != value}
        if changed:
            raise ValidationError("Parameters keep their first value: " + "; ".join(
                f"{key} is {old!r}, not {new!r}" for key, (old, new) in changed.items()))
        run.config = {**run.config, **params}
        run.save(update_fields=["config"])


def tracked_run_set_tags(*, run_id: int, tags: dict[str, str]) -> None:
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        run.tracked_tags = {**run.tracked_tags, **tags}
        run.save(update_fields=["tracked_tags"])


def tracked_run_rename(*, run_id: int, name: str) -> None:
    """A tracked run's name, as its script renames it (MLflow's update_run, or its run-name
    tag); a blank name is ignored."""
    name = name.strip()[:250]
    if name:
        Run.objects.filter(pk=run_id).update(name=name)


def tracked_run_finish(*, run_id: int, status: str, finished_at: datetime | None = None) -> bool:
    """End a tracked run as its script reports: succeeded, failed or cancelled. False if it had
    already ended."""
    if status not in TERMINAL_STATUSES:
        raise ValidationError(f"A run ends as one of {', '.join(sorted(TERMINAL_STATUSES))}, "
                              f"not {status!r}.")
    fields = {"finished_at": finished_at} if finished_at else {}
    return run_transition(run_id=run_id, to=status, **fields)


def run_resume(*, run: Run, user) -> Run:
    """Continue a failed, cancelled or interrupted run in a new run of the same experiment: the
    old run's config, from its newest checkpoint still on disk (weights, optimiser, sampler,
    RNG, step)."""
    if run.status not in RESUMABLE_STATUSES:
        raise ValidationError(f"Only a failed, cancelled or interrupted run can be resumed; run "
                              f"#{run.number} is {run.status}.")
    checkpoint = run.checkpoint_to_resume()
    if checkpoint is None:
        if not run.checkpoints.exists():
            raise ValidationError(
                f"Run #{run.number} saved no checkpoint to resume from. Launch the experiment "
                "again; set checkpoint_every so that a run saves checkpoints as it goes.")
        raise ValidationError(
            f"Run #{run.number} has no checkpoint folder left to resume from before its last "
            "step: newer checkpoints replaced them (keep_checkpoints), or the web server cannot "
            "see the worker's run folder. Launch the experiment again.")
    try:
        config = RunConfig.from_dict({**run.config,
                                      "resume_from": f"checkpoint:{checkpoint.pk}"}).to_dict()
    except ConfigError as exc:
        raise ValidationError(f"Run #{run.number}'s config cannot run any more: {exc}") from exc
    _models_check(project_id=run.experiment.project_id, config=config, config_class=RunConfig,
                  what=f"Run #{run.number}'s config cannot run any more")
    return _run_create(experiment=run.experiment, config=config, user=user, verb=Verb.RESUMED,
                       detail=f"from #{run.number} at step {checkpoint.step}",
                       resumed_from=checkpoint)


def _run_create(*, experiment: Experiment, config: dict[str, Any], user, verb: str,
                detail: str = "", resumed_from: Checkpoint | None = None,
                evaluated_checkpoint: Checkpoint | None = None, enqueue: bool = True,
                **fields: Any) -> Run:
    """Number a new queued run in its experiment, record who started it, enqueue it on commit
    (unless `enqueue` is false: a tracked run, which `fields` start as running)."""
    for _ in range(5):
        try:
            with transaction.atomic():
                last = experiment.runs.aggregate(last=Max("number"))["last"] or 0
                run = Run.objects.create(experiment=experiment, number=last + 1, config=config,
                                         launched_by=user, resumed_from=resumed_from,
                                         evaluated_checkpoint=evaluated_checkpoint, **fields)
                activity.send(sender=Run, run=run, actor=user, verb=verb, detail=detail)
                if enqueue:
                    transaction.on_commit(lambda: _enqueue(run))
            return run
        except IntegrityError:
            continue  # another launch took that number; take the next one
    raise RuntimeError(f"could not number a new run of experiment {experiment.pk}")


def _enqueue(run: Run) -> None:
    """Send a run just created to the broker. A broker that is down or hung does not fail the
    launch: the run stays queued, not accepted ("waiting for the broker" on its page), and the
    workers' housekeeping sends it again (runs_requeue)."""
    _runs_send([run])


def _runs_send(runs: Iterable[Run]) -> list[int]:
    """Send each run to its queue, recording when the broker accepted it; stops at the first
    the broker does not take (the rest would wait on it in vain). Returns the ids sent."""
    sent = []
    with broker_connection() as connection:
        for run in runs:
            if not run_send(run_id=run.pk, queue=run_queue_for(run.config),
                            connection=connection):
                break
            Run.objects.filter(pk=run.pk).update(enqueued_at=timezone.now())
            sent.append(run.pk)
    return sent


# Housekeeping leaves a run this young to the launch that is sending it right now (that takes
# webapp.runs.broker.TIMEOUT_SECONDS at most), and sends at most this many runs in one pass.
_SEND_GRACE = timedelta(seconds=10)
_REQUEUE_BATCH = 100


def runs_requeue(*, now: datetime | None = None) -> int:
    """Send again the queued runs the broker may not hold: those it never accepted (it was down
    or hung at launch), and those it accepted more than RLAB_REQUEUE_AFTER_SECONDS ago on a queue
    that now holds fewer messages than that queue has queued runs (a Redis without persistence
    restarted and lost them). Returns how many were sent.

    A run sent twice is harmless, since only one claim of it succeeds; the rows stay locked while
    they are sent, so two workers' housekeeping do not send the same run at once."""
    now = now or timezone.now()
    queued = Run.objects.filter(status=RunStatus.QUEUED).order_by("created_at")
    unsent = queued.filter(enqueued_at__isnull=True, created_at__lt=now - _SEND_GRACE)
    waited = queued.filter(enqueued_at__lt=now - timedelta(
        seconds=settings.RLAB_REQUEUE_AFTER_SECONDS))
    if not (unsent | waited).exists():
        return 0  # the usual case: no transaction, no lock (a write lock on SQLite)
    with transaction.atomic():
        never_sent = list(unsent.select_for_update(skip_locked=True)[:_REQUEUE_BATCH])
        aged = list(waited.select_for_update(skip_locked=True)[:_REQUEUE_BATCH])
        lost = []
        if aged:
            accepted = queued.filter(enqueued_at__isnull=False).values_list("config", flat=True)
            waiting = Counter(run_queue_for(config) for config in accepted)
            with broker_connection() as connection:
                depths = {queue: queue_depth(queue=queue, connection=connection)
                          for queue in waiting}
            # A queue that holds a message for each of its queued runs lost none of them.
            short = {queue for queue, depth in depths.items()
                     if depth is None or depth < waiting[queue]}
            lost = [run for run in aged if run_queue_for(run.config) in short]
        sent = _runs_send([*never_sent, *lost]) if never_sent or lost else []
    if sent:
        logger.info("queued runs sent to the broker again: %s", ", ".join(map(str, sent)))
    return len(sent)


def run_transition(*, run_id: int, to: str, **fields: Any) -> bool:
    """Move a run to `to` from any status that allows it. False if the run was not in one."""
    sources = [status for status, targets in ALLOWED_TRANSITIONS.items() if to in targets]
    if to in TERMINAL_STATUSES:
        fields.setdefault("finished_at", timezone.now())
    updated = Run.objects.filter(pk=run_id, status__in=sources).update(status=to, **fields)
    return updated == 1


def run_claim(*, run_id: int, worker: str) -> bool:
    """queued → starting, for exactly one worker; counts the attempt."""
    now = timezone.now()
    updated = Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.STARTING, worker=worker, started_at=now, heartbeat_at=now,
        attempts=F("attempts") + 1)
    return updated == 1


def run_worker_config(*, run_id: int) -> dict[str, Any] | None:
    """The config a claimed run's training process gets: its model references turned into the
    folders they name, checked again against the run's project (webapp.runs.model_sources).
    None, with the run failed and the reason recorded, if a model cannot be loaded any more."""
    run = Run.objects.select_related("experiment").get(pk=run_id)
    config_class = EvalConfig if run.experiment.kind == ExperimentKind.EVALUATION else RunConfig
    try:
        return config_for_worker(project_id=run.experiment.project_id, config=run.config,
                                 config_class=config_class)
    except ValidationError as exc:
        run_fail(run_id=run_id, error_message=" ".join(exc.messages))
        return None


def run_mark_running(*, run_id: int, device: str, total_steps: int) -> bool:
    return run_transition(run_id=run_id, to=RunStatus.RUNNING, device=device[:100],
                          progress_total=total_steps, running_since=timezone.now(),
                          heartbeat_at=timezone.now())


def run_heartbeat(*, run_id: int) -> str | None:
    """Record that the worker is alive; return the run's status (a cancel shows up here)."""
    Run.objects.filter(pk=run_id, status__in=_ACTIVE).update(heartbeat_at=timezone.now())
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()


def run_progress(*, run_id: int, step: int, total_steps: int) -> None:
    Run.objects.filter(pk=run_id, status__in=_ACTIVE).update(
        progress_step=step, progress_total=total_steps, heartbeat_at=timezone.now())


def run_succeed(*, run_id: int) -> bool:
    return run_transition(run_id=run_id, to=RunStatus.SUCCEEDED)


def run_fail(*, run_id: int, error_message: str) -> bool:
    ok = run_transition(run_id=run_id, to=RunStatus.FAILED, error_message=error_message[:10_000])
    if ok:
        logger.warning("run %s failed: %s", run_id, next(iter(error_message.splitlines()), ""))
    return ok


def run_cancel(*, run: Run, user) -> bool:
    """Mark the run cancelled now; its worker sees the status at its next heartbeat and stops
    the training process group. False if the run had already ended."""
    with transaction.atomic():
        cancelled = run_transition(run_id=run.pk, to=RunStatus.CANCELLED)
        if cancelled:
            activity.send(sender=Run, run=run, actor=user, verb=Verb.CANCELLED, detail="")
    return cancelled


# Heartbeats a run may miss before runs_interrupt(silent=True) takes it for left behind by a
# worker that no longer runs it.
SILENT_AFTER_HEARTBEATS = 3


def runs_interrupt(*, worker: str, reason: str, keep: Iterable[int] = (),
                   silent: bool = False) -> list[int]:
    """Mark interrupted, with `reason`, the runs that `worker` (a worker's name) claimed and that
    are still starting or running, but those in `keep`; if `silent`, only those that missed
    SILENT_AFTER_HEARTBEATS heartbeats. A supervisor still running one sees the status at its
    next heartbeat and stops the training process; the run can be resumed from its newest
    checkpoint. Returns the ids of the runs interrupted."""
    runs = Run.objects.filter(worker=worker, status__in=[RunStatus.STARTING, RunStatus.RUNNING]
                              ).exclude(pk__in=list(keep))
    if silent:
        runs = runs.filter(heartbeat_at__lt=timezone.now() - timedelta(
            seconds=SILENT_AFTER_HEARTBEATS * settings.RLAB_HEARTBEAT_SECONDS))
    interrupted = [run_id for run_id in runs.values_list("pk", flat=True)
                   if run_transition(run_id=run_id, to=RunStatus.INTERRUPTED,
                                     error_message=reason)]
    for run_id in interrupted:
        logger.warning("run %s interrupted: %s", run_id, reason)
        checkpoints_recover(run_id=run_id)
    return interrupted


def runs_fail_stale(*, now: datetime | None = None) -> int:
    """Fail runs whose worker stopped heartbeating (killed, machine lost): nobody else will."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.RLAB_STALE_AFTER_SECONDS)
    # A tracked run has no worker: its script may be silent for hours, and ends it itself.
    stale = Run.objects.filter(status__in=[RunStatus.STARTING, RunStatus.RUNNING],
                               heartbeat_at__lt=cutoff).exclude(
                                   experiment__kind=ExperimentKind.TRACKED)
    count = 0
    for run_id in stale.values_list("pk", flat=True):
        failed = run_fail(run_id=run_id, error_message=(
            "The worker running this run stopped responding (no heartbeat for "
            f"{settings.RLAB_STALE_AFTER_SECONDS} s): it was killed or lost its machine. "
            "Resume the run from its newest checkpoint, or launch the experiment again."))
        if failed:
            checkpoints_recover(run_id=run_id)
        count += failed
    return count


# The most points stored by one INSERT of arrays (metrics_ingest); a larger batch is COPYed.
SMALL_METRIC_BATCH = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class MetricSample(NamedTuple):
    """One point. Any tuple of these four, in this order, is one too: the API passes the rows of
    its batches as zip()'s tuples, with no object per point."""

    key: str
    step: int
    value: float
    wall_time: datetime


def metrics_ingest(*, run_id: int, points: Iterable[tuple[str, int, float, datetime]]) -> int:
    """Store points (MetricSample rows); a (run, key, step) already stored is kept as is, so
    replays are harmless. Keys are cut to METRIC_KEY_MAX_LENGTH characters, and a character
    Postgres cannot store (a NUL from a trainer) becomes U+FFFD: the edges refuse such keys, and
    a run's own writes must never fail on one. Returns how many points there were.

    On Postgres a batch of up to SMALL_METRIC_BATCH points (a step's metrics, what scripts and
    the worker send) is one INSERT of arrays, skipping points already stored. A larger one is
    COPYed, in binary, into a temporary table and inserted from there in one statement. The
    table lives as long as the connection and is emptied before each use, so two batches in one
    transaction never mix. That insert is a plain one first, about a third cheaper for Postgres
    than one that checks each row for a conflict; a batch with a point already stored (a
    replay) fails it, and is inserted again, in the same transaction, skipping those."""
    stored_keys: dict[str, str] = {}  # a batch repeats a few keys: each is checked once

    def stored(key: str) -> str:
        found = stored_keys.get(key)
        if found is None:
            found = stored_keys[key] = storable_text(key)
        return found

    if connection.vendor != "postgresql":
        rows = [MetricPoint(run_id=run_id, key=stored(key)[:METRIC_KEY_MAX_LENGTH], step=step,
                            value=value, wall_time=wall_time)
                for key, step, value, wall_time in points]
        MetricPoint.objects.bulk_create(rows, batch_size=2000, ignore_conflicts=True)
        return len(rows)
    points = iter(points)
    first = list(islice(points, SMALL_METRIC_BATCH + 1))
    columns = f"INSERT INTO {MetricPoint._meta.db_table} (run_id, key, step, value, wall_time)"
    if len(first) <= SMALL_METRIC_BATCH:
        if first:
            keys, steps, values, times = zip(*first)
            with connection.cursor() as cursor:
                # Times as microseconds since 1970: a datetime's text may carry an offset that
                # Postgres does not read (beyond ±15:59), and one at the edge of year 1 or 9999
                # cannot be moved to UTC in Python.
                cursor.execute(
                    f"{columns} SELECT %s, left(key, {METRIC_KEY_MAX_LENGTH}), step, value, "
                    "timestamptz 'epoch' + micros * interval '1 microsecond' "
                    "FROM unnest(%s::text[], %s::int8[], %s::float8[], %s::int8[]) "
                    "AS batch(key, step, value, micros) "
                    "ON CONFLICT (run_id, key, step) DO NOTHING",
                    [run_id, [stored(key) for key in keys], [int(step) for step in steps],
                     [float(value) for value in values],
                     [(time - _EPOCH) // _MICROSECOND for time in times]])
        return len(first)
    points = chain(first, points)
    count = 0
    insert = (f"{columns} SELECT %s, left(key, {METRIC_KEY_MAX_LENGTH}), step, value, wall_time "
              "FROM metric_incoming")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS metric_incoming (key text, step bigint, "
                       "value float8, wall_time timestamptz)")
        cursor.execute("TRUNCATE metric_incoming")
        with cursor.copy("COPY metric_incoming FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "int8", "float8", "timestamptz"])
            for count, (key, step, value, wall_time) in enumerate(points, 1):
                copy.write_row((stored(key), step, value, wall_time))
        try:
            with transaction.atomic():
                cursor.execute(insert, [run_id])
        except IntegrityError:
            cursor.execute(f"{insert} ON CONFLICT (run_id, key, step) DO NOTHING", [run_id])
    return count


def rollouts_ingest(*, run_id: int, step: int, items: Iterable[dict[str, Any]]) -> int:
    """Store one step's rollouts. A group is degenerate when all its rewards are equal: the
    item's `group_degenerate` when it has one (the trainer saw the whole group, though it may log
    only part of it), else decided from this batch's items of the same group (outside scripts
    send whole groups); a group of one is not degenerate.

    What Postgres cannot store is replaced rather than refused, since a model can generate it:
    a NUL or a lone surrogate in the text becomes U+FFFD, and NaN or ±Infinity in the JSON
    columns null (webapp.common.inputs). The API refuses both before they get here."""
    items = list(items)
    group_rewards: dict[int, list[float]] = {}
    for item in items:
        group_rewards.setdefault(int(item.get("group", 0)), []).append(
            float(item.get("reward", 0.0)))

    def degenerate(item: dict[str, Any]) -> bool:
        if item.get("group_degenerate") is not None:
            return bool(item["group_degenerate"])
        rewards = group_rewards[int(item.get("group", 0))]
        return len(rewards) > 1 and max(rewards) == min(rewards)

    rows = [
        Rollout(
            run_id=run_id, step=step, group=int(item.get("group", 0)),
            sample_index=int(item.get("sample_index", 0)),
            prompt_id=storable_text(str(item.get("prompt_id", "")))[:200],
            prompt=storable_text(str(item.get("prompt", ""))),
            completion=storable_text(str(item.get("completion", ""))),
            reward=float(item.get("reward", 0.0)),
            rewards=storable_json(item.get("rewards") or {}), advantage=item.get("advantage"),
            completion_tokens=item.get("completion_tokens"),
            truncated=bool(item.get("truncated", False)),
            extra=storable_json(item.get("extra") or {}),
            token_data=storable_json(item.get("tokens") or None),
            group_degenerate=degenerate(item),
        )
        for item in items
    ]
    Rollout.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
    return len(rows)


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: str
    final: bool = False


def checkpoints_ingest(*, run_id: int, checkpoints: Iterable[CheckpointSaved]) -> int:
    """Record saved checkpoints, one per (run, step): a step seen again takes the path and final
    flag of the later report, so a replayed batch changes nothing."""
    # One row per step: Postgres refuses an upsert that touches the same row twice.
    latest = {c.step: c for c in checkpoints}
    rows = [Checkpoint(run_id=run_id, step=c.step, path=c.path, final=c.final)
            for c in latest.values()]
    Checkpoint.objects.bulk_create(rows, update_conflicts=True, unique_fields=["run", "step"],
                                   update_fields=["path", "final"])
    return len(rows)


_CHECKPOINT_FOLDER = re.compile(r"checkpoint-([0-9]{1,18})")


def checkpoints_recover(*, run_id: int) -> int:
    """Record the checkpoints in the run's folder that the database never heard of, for a run
    whose worker died. The training process saves (and deletes older checkpoints, keeping
    keep_checkpoints) whether or not the worker relaying its events keeps up: a worker killed
    while it lagged leaves rows for folders already deleted and folders with no row, and the
    run could not be resumed. A folder named checkpoint-<step> is complete (training renames it
    into place once written). Nothing when this machine cannot see the folder. Returns how many
    were recorded."""
    run = Run.objects.filter(pk=run_id).only("pk", "created_at").first()
    if run is None:
        return 0
    try:
        entries = list(os.scandir(run_folder(run.pk, run.created_at)))
    except OSError:
        return 0
    known = set(Checkpoint.objects.filter(run_id=run_id).values_list("step", flat=True))
    found = [CheckpointSaved(step=int(match[1]), path=entry.path) for entry in entries
             if (match := _CHECKPOINT_FOLDER.fullmatch(entry.name))
             and entry.is_dir(follow_symlinks=False) and int(match[1]) not in known]
    if found:
        checkpoints_ingest(run_id=run_id, checkpoints=found)
        logger.info("run %s: recorded checkpoints found in its folder at steps %s", run_id,
                    ", ".join(str(c.step) for c in sorted(found, key=lambda c: c.step)))
    return len(found)


def logs_append(*, run_id: int, lines: Iterable[tuple[datetime, str, str, str]]) -> int:
    """Append (time, level, source, message) lines; a NUL or a lone surrogate in a line (a
    trainer's output) becomes U+FFFD, so that the line is kept rather than refused."""
    rows = [LogLine(run_id=run_id, time=t, level=storable_text(level)[:10],
                    source=storable_text(source)[:10], message=storable_text(message)[:10_000])
            for t, level, source, message in lines]
    LogLine.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def run_delete_allowed(*, run: Run, user) -> bool:
    """Whether `user` may delete the run: an admin of its team, or the member who launched it."""
    team_id = run.experiment.project.team_id
    return user_has_role(user, team_id, Role.ADMIN) or (
        run.launched_by_id == user.pk and user_has_role(user, team_id, Role.MEMBER))
