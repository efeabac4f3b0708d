"""Writes for runs: launch, resume, the status state machine and cancel. What a run reports is
ingested by webapp.runs.ingestion; tracked runs' own writes are webapp.runs.tracking.

Every status change is a conditional UPDATE (`run_transition`), so a run is claimed by one worker
at most, and a cancel that races with a finishing run leaves exactly one of the two outcomes.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, Min, Q, QuerySet
from django.dispatch import Signal
from django.utils import timezone

from training.spec.algorithms import algorithm_spec
from training.spec.config import ConfigError, RunConfig
from training.spec.evaluation_config import EvalConfig
from training.spec.model_refs import RefKind, parse_model_ref
from webapp.datasets.selectors import dataset_file_for_run
from webapp.experiments.models import Experiment, ExperimentKind
from webapp.projects.activity import Verb, activity
from webapp.projects.models import Project
from webapp.runs.broker import broker_connection, queue_depth, run_send
from webapp.runs.ingestion import checkpoints_recover
from webapp.runs.model_sources import config_for_worker, config_models_check
from webapp.runs.models import (
    ALLOWED_TRANSITIONS,
    RESUMABLE_STATUSES,
    TERMINAL_STATUSES,
    Checkpoint,
    Run,
    RunStatus,
)
from webapp.runs.seed_groups import seed_group_of
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


def run_launch(*, experiment: Experiment, user, overrides: dict[str, Any] | None = None,
               detail: str = "", **fields: Any) -> Run:
    """Create a queued Run from the experiment's current config, with `overrides` (settings by
    name, flat as RunConfig.to_dict has them: a sweep's trial, a seed) applied, and enqueue it
    once committed.
    `fields` go to the Run (a sweep's runs record their sweep and trial)."""
    if experiment.is_evaluation:
        raise ValidationError("An evaluation runs on a model or checkpoint: choose one.")
    if experiment.is_tracked:
        raise ValidationError(f"{experiment.name} is tracked: its runs are logged by scripts "
                              "that run elsewhere (the SDK, an MLflow client), not launched.")
    if experiment.kind == ExperimentKind.SCRIPT:
        raise ValidationError(f"{experiment.name} holds script runs: launch them from their "
                              "job template.")
    try:
        config = RunConfig.from_dict({**experiment.config, **(overrides or {})}).to_dict()
    except ConfigError as exc:
        raise ValidationError(f"The experiment's config cannot run: {exc}") from exc
    _models_check(project_id=experiment.project_id, config=config, config_class=RunConfig,
                  what="The experiment's config cannot run")
    if config["dataset"]:
        # The experiment names one of its project's datasets; the run records that dataset's
        # file, whose name is its content hash, so the run keeps the exact rows it trained on.
        config["dataset"] = dataset_file_for_run(
            project=experiment.project, reference=config["dataset"],
            kind=algorithm_spec(config["algorithm"]).trains_on)
    return run_create(experiment=experiment, config=config, user=user, verb=Verb.LAUNCHED,
                      detail=detail, **fields)


# The most seeds one launch may start.
MAX_SEEDS = 100


def runs_launch_seeds(*, experiment: Experiment, user, seeds: list[int]) -> list[Run]:
    """Launch the experiment once per seed, all or none: the runs are created in one
    transaction, and enqueued once it commits. ValidationError for no seeds, a seed twice, or
    more than MAX_SEEDS."""
    if not seeds:
        raise ValidationError("Give at least one seed.")
    if len(seeds) > MAX_SEEDS:
        raise ValidationError(f"At most {MAX_SEEDS} seeds at once; {len(seeds)} were given.")
    twice = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if twice:
        raise ValidationError(f"Each seed once: {', '.join(map(str, twice))} given twice.")
    with transaction.atomic():
        return [run_launch(experiment=experiment, user=user, overrides={"seed": seed},
                           detail=f"seed {seed}") for seed in seeds]


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
    return run_create(experiment=experiment, config=config, user=user, verb=Verb.LAUNCHED,
                       detail=f"on {what}", evaluated_checkpoint=checkpoint)


def _models_check(*, project_id: int, config: dict[str, Any], config_class, what: str) -> None:
    """ValidationError starting with `what` unless the project's runs can load every model the
    config names (webapp.runs.model_sources)."""
    try:
        config_models_check(project_id=project_id, config=config, config_class=config_class)
    except ValidationError as exc:
        raise ValidationError(f"{what}: {'; '.join(exc.messages)}") from None


# How runs that the built-in trainer does not run are resumed, by experiment kind: a script
# run's by webapp.jobs, which registers it in its AppConfig.ready (it sits above this app).
_resumers: dict[str, Callable[..., Run]] = {}


def run_resume_register(kind: str, resumer: Callable[..., Run]) -> None:
    """Have run_resume call `resumer(run=, user=)` for the runs of experiments of `kind`."""
    _resumers[kind] = resumer


def run_resume(*, run: Run, user) -> Run:
    """Continue a failed, cancelled or interrupted run in a new run of the same experiment: the
    old run's config, from its newest checkpoint still on disk (weights, optimiser, sampler,
    RNG, step)."""
    if run.status not in RESUMABLE_STATUSES:
        raise ValidationError(f"Only a failed, cancelled or interrupted run can be resumed; run "
                              f"#{run.number} is {run.status}.")
    resumer = _resumers.get(run.experiment.kind)
    if resumer is not None:
        return resumer(run=run, user=user)
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
    return run_create(experiment=run.experiment, config=config, user=user, verb=Verb.RESUMED,
                       detail=f"from #{run.number} at step {checkpoint.step}",
                       resumed_from=checkpoint)


def run_create(*, experiment: Experiment, config: dict[str, Any], user, verb: str,
                detail: str = "", resumed_from: Checkpoint | None = None,
                evaluated_checkpoint: Checkpoint | None = None, enqueue: bool = True,
                **fields: Any) -> Run:
    """Number a new queued run in its experiment, record who started it, enqueue it on commit
    (unless `enqueue` is false: a tracked run, which `fields` start as running)."""
    for _ in range(5):
        try:
            with transaction.atomic():
                last = experiment.runs.aggregate(last=Max("number"))["last"] or 0
                queue = fields.pop("queue", None) or (run_queue_for(config) if enqueue else "")
                devices = fields.pop("devices", None) or int(config.get("devices") or 1)
                run = Run.objects.create(experiment=experiment, number=last + 1, config=config,
                                         seed_group=seed_group_of(config), queue=queue,
                                         devices=devices,
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
            if not run_send(run_id=run.pk, queue=run.queue or run_queue_for(run.config),
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
            waiting = Counter(queued.filter(enqueued_at__isnull=False)
                              .values_list("queue", flat=True))
            with broker_connection() as connection:
                depths = {queue: queue_depth(queue=queue, connection=connection)
                          for queue in waiting}
            # A queue that holds a message for each of its queued runs lost none of them.
            short = {queue for queue, depth in depths.items()
                     if depth is None or depth < waiting[queue]}
            lost = [run for run in aged if run.queue in short]
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
    if updated and to in TERMINAL_STATUSES:
        transaction.on_commit(queues_wake)
        transaction.on_commit(lambda: run_ended.send(sender=Run, run_id=run_id, status=to))
    return updated == 1


# Sent once a run's move to an end (succeeded, failed, cancelled, interrupted, crashed) is
# committed, with `run_id` and `status`: apps above this one act on a run's end here (a sweep
# tells its study, and asks for the next trial).
run_ended = Signal()

# A project's runs that hold a place under its limit: claimed by a worker and not ended. A
# tracked run runs on its script's machine, not on a worker, so it holds none.
_HOLDING = [RunStatus.STARTING, RunStatus.RUNNING]

# The most tokens queues_wake sends to one queue at once.
_WAKE_MAX = 100


def runs_holding_places() -> QuerySet[Run]:
    """The runs that hold a place under their project's limit (see _HOLDING)."""
    return Run.objects.filter(status__in=_HOLDING).exclude(
        experiment__kind=ExperimentKind.TRACKED)


def queues_wake(*, per_queue: int = 1) -> None:
    """Send up to `per_queue` tokens to each queue that holds queued runs (never more than it
    holds): a run that just ended, or a limit raised, may have freed places that runs held back
    by a limit wait for, and their own tokens were dropped when the limit held them
    (run_claim_next). A token too many is dropped by the worker that takes it."""
    per_queue = min(per_queue, _WAKE_MAX)
    if per_queue < 1:
        return
    queued = Run.objects.filter(status=RunStatus.QUEUED).exclude(queue="").order_by()
    tokens = {row["queue"]: (row["first"], min(row["n"], per_queue))
              for row in queued.values("queue").annotate(first=Min("pk"), n=Count("pk"))}
    if not tokens:
        return
    with broker_connection() as connection:
        for queue, (run_id, count) in tokens.items():
            for _ in range(count):
                if not run_send(run_id=run_id, queue=queue, connection=connection):
                    return  # the broker is down; housekeeping's runs_requeue sends them later


# Why a queued run must still wait, besides its project's limit: apps above this one register
# their rules here in their AppConfig.ready (a sweep's concurrency). A check gets the run and
# answers why it waits, or None. At a claim it runs in the claim's transaction with the run's
# project row locked, so its count of the project's active runs is exact. A rule may also say,
# in one query, which queued runs it holds back now (a Q over Run), so that a claim leaves them
# out up front instead of asking about each (a big sweep at its limit).
ClaimCheck = Callable[[Run], "str | None"]
HeldBack = Callable[[], Q]
_claim_checks: list[ClaimCheck] = []
_held_back: list[HeldBack] = []

# How many of a queue's queued runs a claim reads at a time, walking the queue for one that may
# start.
CLAIM_CANDIDATES = 50


def claim_check_register(check: ClaimCheck, *, held_back: HeldBack | None = None) -> None:
    if check not in _claim_checks:
        _claim_checks.append(check)
    if held_back is not None and held_back not in _held_back:
        _held_back.append(held_back)


def project_limit_reason(*, project: Project, active: int) -> str | None:
    """Why a run of `project`, which has `active` runs holding places, must wait for its limit;
    None when the project has no limit or places are free."""
    limit = project.max_concurrent_runs
    if limit is None or active < limit:
        return None
    return (f"The project's limit of {limit} at once is reached ({active} starting or "
            "running).")


def claim_checks_reason(run: Run) -> str | None:
    """The first registered check's reason for the queued `run` to wait, or None."""
    for check in _claim_checks:
        reason = check(run)
        if reason:
            return reason
    return None


def run_wait_reason(run: Run) -> str | None:
    """Why the queued `run` may not start now (its project's concurrency limit, or a registered
    check), or None when a free worker of its queue may take it."""
    project = run.experiment.project
    if project.max_concurrent_runs is not None:
        active = runs_holding_places().filter(experiment__project_id=project.pk).count()
        reason = project_limit_reason(project=project, active=active)
        if reason:
            return reason
    return claim_checks_reason(run)


def projects_at_limit() -> set[int]:
    """The ids of the projects whose limit is reached: their queued runs must wait. It reads
    the few runs that hold places, never a project's ended ones."""
    limit = "experiment__project__max_concurrent_runs"
    holding = (runs_holding_places().filter(**{f"{limit}__isnull": False}).order_by()
               .values("experiment__project_id", limit).annotate(active=Count("pk")))
    return {row["experiment__project_id"] for row in holding if row["active"] >= row[limit]}


def run_claim_next(*, queue: str, worker: str, passed_over: Q | None = None,
                   devices: Sequence[str] | None = None) -> int | None:
    """Claim for `worker` the queued run of `queue` that goes first (highest priority, then
    oldest) among those no limit holds back; None when there is none.

    A run's message on the broker is a token, not an order: whichever worker takes one starts
    the run that is first now, so priorities set after launch take effect, and a run held back
    by a limit is passed over. The runs of projects at their limit, and those a registered rule
    holds back (a sweep's at its limit), are left out by a query each up front, and the walk goes down the whole queue, so runs held back (a big sweep's) never
    hide a run that may start behind them. Each candidate is tried in a transaction of its own
    that locks its project's row (claims in one project take turns, so a limit holds with many
    workers) and the run (skipped if another claim holds it). `passed_over` (a Q over Run)
    leaves out the runs this worker cannot run (script runs, on a worker that does not take
    them).

    `devices`: the worker's devices (worker.devices), shared by all of its tasks; a run that
    needs more than are free (not held by the worker's starting and running runs) is passed
    over, and the claim gives the run its devices (Run.device_ids) in the same transaction,
    under a lock of the worker's (_worker_lock), so two tasks never get the same device.
    None: no devices are counted or given."""
    full = projects_at_limit()
    candidates = Run.objects.filter(status=RunStatus.QUEUED, queue=queue).exclude(
        experiment__project_id__in=full)
    if passed_over is not None:
        candidates = candidates.exclude(passed_over)
    if devices is not None:
        free = run_devices_free(worker=worker, devices=devices)
        if not free:
            return None
        candidates = candidates.filter(devices__lte=len(free))
    for held in _held_back:
        candidates = candidates.exclude(held())
    candidates = (candidates
                  .order_by("-priority", "created_at", "pk")
                  .values_list("pk", "experiment__project_id"))
    offset = 0
    while chunk := list(candidates[offset:offset + CLAIM_CANDIDATES]):
        offset += CLAIM_CANDIDATES
        for run_id, project_id in chunk:
            if project_id in full:
                continue  # found full earlier in this walk
            with transaction.atomic():
                if devices is not None:
                    _worker_lock(worker)  # first: claims of one worker take turns
                Project.objects.select_for_update().filter(pk=project_id).exists()
                run = (Run.objects.select_for_update(skip_locked=True, of=("self",))
                       .select_related("experiment__project")
                       .filter(pk=run_id, status=RunStatus.QUEUED).first())
                if run is None:
                    continue
                project = run.experiment.project
                if project.max_concurrent_runs is not None:
                    active = runs_holding_places().filter(experiment__project_id=project_id)
                    if project_limit_reason(project=project, active=active.count()):
                        full.add(project_id)
                        continue
                if claim_checks_reason(run):
                    continue
                given: list[str] = []
                if devices is not None:
                    free = run_devices_free(worker=worker, devices=devices)
                    if not free:
                        return None  # taken meanwhile by the worker's other tasks
                    if run.devices_needed > len(free):
                        continue
                    given = free[:run.devices_needed]
                if run_claim(run_id=run_id, worker=worker, device_ids=given):
                    return run_id
    return None


def run_devices_free(*, worker: str, devices: Sequence[str]) -> list[str]:
    """Those of `devices` (a worker's, in its order) that none of the runs `worker` claimed and
    that are starting or running holds. Exact only under _worker_lock, in the claim's
    transaction."""
    held: set[str] = set()
    for ids in Run.objects.filter(worker=worker, status__in=_HOLDING).values_list(
            "device_ids", flat=True):
        if isinstance(ids, list):
            held.update(map(str, ids))
    return [device for device in devices if device not in held]


# The first key of the advisory locks that serialise one worker's claims (the second is its
# name's hash): "rlab" in ASCII, so other users of advisory locks are not in the way.
_WORKER_LOCK_SPACE = 0x726C6162


def _worker_lock(worker: str) -> None:
    """Make the claims of `worker`'s tasks take turns until this transaction ends, so that each
    sees the devices the one before gave away. On Postgres an advisory lock on the worker's
    name (a worker need not have a row anywhere); SQLite's transactions take its one write lock
    when they begin (transaction_mode IMMEDIATE), so they take turns already."""
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(hashlib.blake2b(worker.encode(), digest_size=4).digest(), "big",
                         signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_WORKER_LOCK_SPACE, key])


def run_claim(*, run_id: int, worker: str, device_ids: Sequence[str] = ()) -> bool:
    """queued → starting, for exactly one worker; counts the attempt, and records the devices
    the run is given."""
    now = timezone.now()
    updated = Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.STARTING, worker=worker, started_at=now, heartbeat_at=now,
        attempts=F("attempts") + 1, device_ids=list(device_ids))
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
    """starting → running; `device` is what the process reports ("cuda", "cpu"), told with
    the devices the run was given ("cuda:1,3", "cpu ×2")."""
    device_ids = Run.objects.filter(pk=run_id).values_list("device_ids", flat=True).first()
    device = device_text(device, device_ids or [])
    return run_transition(run_id=run_id, to=RunStatus.RUNNING, device=device[:100],
                          progress_total=total_steps, running_since=timezone.now(),
                          heartbeat_at=timezone.now())


def device_text(reported: str, device_ids: Sequence[str]) -> str:
    """What a run's device column says: the kind of device its process reports, with the
    worker's devices it was given.

    >>> device_text("cuda", ["1", "3"]), device_text("cpu", ["cpu0", "cpu1"])
    ('cuda:1,3', 'cpu ×2')
    >>> device_text("cpu", ["cpu1"]), device_text("cpu", ["0"]), device_text("cuda", [])
    ('cpu', 'cpu', 'cuda')
    """
    ids = [str(device) for device in device_ids]
    if reported.startswith("cuda") and ids and not any(i.startswith("cpu") for i in ids):
        return f"cuda:{','.join(ids)}"
    if reported == "cpu" and all(i.startswith("cpu") for i in ids) and len(ids) > 1:
        return f"cpu ×{len(ids)}"
    return reported


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
def run_delete_allowed(*, run: Run, user) -> bool:
    """Whether `user` may delete the run: an admin of its team, or the member who launched it."""
    team_id = run.experiment.project.team_id
    return user_has_role(user, team_id, Role.ADMIN) or (
        run.launched_by_id == user.pk and user_has_role(user, team_id, Role.MEMBER))
