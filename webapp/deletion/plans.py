"""Deleting runs, experiments, datasets and projects, with what they hold on disk.

A deletion is planned first (`DeletionPlan`: what goes, and what stops it now), which the
confirmation page shows; the services (run_delete, experiment_delete, dataset_delete,
project_delete) then delete the rows in one transaction and remove the files only once it has
committed (`transaction.on_commit`), so a delete that fails loses no file. A file that cannot be
removed is logged, never fatal: the rows are gone by then, and an orphan costs only disk space.

A run's files are its folder, `<RLAB_RUN_DIR>/run-<id>-<created>` (webapp.runs.files), with its
checkpoints, and its artifacts in the artifact store with the models it logged
(webapp.artifacts). A dataset's files are blobs in the content-addressed store
(webapp.datasets.storage), shared by every dataset with the same bytes and by every run that
trained on them (a run's config snapshot names the normalised blob): a blob goes once neither
references it any more.

A run is never deleted while a training process may still write into it: an active run must be
cancelled first (cancelling and deleting in one step would race with the worker, which notices a
cancel only at its next heartbeat and then stops the process within a grace period), and a run
that was ended from outside is deleted only once its worker has said it stopped the process, or
that much time has passed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction
from django.db.models import Q, QuerySet
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from webapp.artifacts.sizes import artifacts_bytes
from webapp.artifacts.services import artifact_files_remove_on_commit, artifact_prefixes
from webapp.datasets import storage
from webapp.datasets.models import Dataset
from webapp.experiments.models import ExperimentKind
from webapp.projects.disk_use import disk_use_cache_key
from webapp.reviews.models import Annotation
from webapp.runs.files import RUN_FOLDER_NAME, folder_bytes, run_folder
from webapp.runs.models import (
    TERMINAL_STATUSES,
    Checkpoint,
    LogLine,
    MetricPoint,
    Rollout,
    Run,
    RunStatus,
)

logger = logging.getLogger(__name__)

# A deletion that met a concurrent change (a run launched from a checkpoint it removes).
CHANGED_MEANWHILE = ("Something in it changed while it was being deleted (a run was launched "
                     "or resumed): nothing was deleted. Look again, then delete.")

_ACTIVE = [status for status in RunStatus if status not in TERMINAL_STATUSES]
# Statuses set from outside while a worker may still be running the training process: a cancel,
# a worker's shutdown, and the stale-run check.
_ENDED_FROM_OUTSIDE = [RunStatus.CANCELLED, RunStatus.INTERRUPTED, RunStatus.FAILED]
# The supervisor's closing log line after it stopped a process (worker.supervisor._record_end).
_WORKER_SOURCE = "worker"
_CHECKPOINT_REFERENCE = re.compile(r"checkpoint:([0-9]+)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 500  # runs per DELETE statement
_NAMED = 5  # runs a refusal names, at most


def stop_window() -> timedelta:
    """How long after a run was ended from outside its worker may still be stopping the
    training process: a heartbeat to notice, the grace period before SIGKILL, then up to 10 s
    for the process to go (worker.supervisor._stop), and some slack."""
    return timedelta(seconds=settings.RLAB_HEARTBEAT_SECONDS
                     + settings.RLAB_CANCEL_GRACE_SECONDS + 20)


@dataclass
class DeletionPlan:
    """What deleting removes, and why it cannot be done now (`refusals`; none: it can)."""

    runs: int = 0
    checkpoints: int = 0
    metric_points: int = 0
    rollouts: int = 0
    experiments: int = 0
    datasets: int = 0
    bytes_on_disk: int = 0
    refusals: list[str] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    run_folders: list[Path] = field(default_factory=list)
    # Blobs that may be left unreferenced: each is removed after the commit if it then is.
    blobs: set[str] = field(default_factory=set)
    # The artifact store's prefixes of the runs' and experiments' artifacts and logged models.
    artifact_prefixes: list[str] = field(default_factory=list)


def deletion_plan(*, runs: QuerySet[Run], project_id: int, experiments: int = 0,
                  datasets: QuerySet[Dataset] | None = None, experiment_ids: Sequence[int] = (),
                  whole_project: bool = False) -> DeletionPlan:
    """What deleting `runs` (and `datasets`, and `experiments` experiments, `experiment_ids`)
    of the project would remove, with the bytes it would free; and the refusals: runs that may
    still write, and active runs elsewhere in the project that load a checkpoint of `runs`."""
    datasets = datasets if datasets is not None else Dataset.objects.none()
    rows = list(runs.values("pk", "number", "status", "created_at", "started_at", "finished_at",
                            "experiment__name", "experiment__kind", "config__dataset"))
    plan = DeletionPlan(
        runs=len(rows), experiments=experiments, datasets=datasets.count(),
        checkpoints=Checkpoint.objects.filter(run__in=runs).count(),
        metric_points=MetricPoint.objects.filter(run__in=runs).count(),
        rollouts=Rollout.objects.filter(run__in=runs).count(),
        run_ids=[row["pk"] for row in rows],
        run_folders=[run_folder(row["pk"], row["created_at"]) for row in rows])
    plan.refusals += _still_writing(rows)
    if not whole_project:  # a project's checkpoints serve its own runs only
        plan.refusals += _checkpoints_in_use(runs, project_id)
    plan.bytes_on_disk = sum(folder_bytes(folder) for folder in plan.run_folders)
    plan.artifact_prefixes = artifact_prefixes(runs=plan.run_ids, experiments=experiment_ids)
    plan.bytes_on_disk += artifacts_bytes(runs=plan.run_ids, experiments=experiment_ids)
    for row in rows:
        sha256 = _snapshot_blob(row)
        if sha256:
            plan.blobs.add(sha256)
    for sha256, normalized_sha256 in datasets.values_list("sha256", "normalized_sha256"):
        plan.blobs |= {sha256, normalized_sha256}
    for sha256 in plan.blobs:
        if not _blob_referenced(sha256, except_runs=runs, except_datasets=datasets):
            plan.bytes_on_disk += _blob_bytes(sha256)
    return plan


def runs_rows_delete(run_ids: Sequence[int]) -> None:
    """Delete the runs and every row that hangs off them, in the caller's transaction.

    The bulky rows go first, a statement per table: left to the ORM, the cascade reads every
    rollout's id to find its annotations, which took 12.6 s instead of 3.6 s for a run with a
    million metric points and 100,000 rollouts. The rest (checkpoints, and the runs that resumed
    from or evaluated one, which are kept; comments, stars, tags, activity) follow the models'
    on_delete rules."""
    for start in range(0, len(run_ids), _CHUNK):
        chunk = list(run_ids[start:start + _CHUNK])
        Annotation.objects.filter(rollout__run_id__in=chunk).delete()
        _delete_where_run_in(Rollout, chunk)
        MetricPoint.objects.filter(run_id__in=chunk).delete()
        LogLine.objects.filter(run_id__in=chunk).delete()
        Run.objects.filter(pk__in=chunk).delete()


def files_remove_on_commit(plan: DeletionPlan, *, project_id: int) -> None:
    """Once the caller's transaction commits: remove the plan's run folders, its artifacts, and
    its blobs that nothing references any more; forget the project's disk use."""
    artifact_files_remove_on_commit(list(plan.artifact_prefixes))
    transaction.on_commit(partial(_files_remove, list(plan.run_folders), set(plan.blobs),
                                  project_id))


def deletion_summary(plan: DeletionPlan) -> str:
    """'3 runs, 4 checkpoints, 1.2 GB on disk': for the feed and the message after a delete."""
    parts = [f"{count:,} {name}{'' if count == 1 else 's'}" for count, name in (
        (plan.experiments, "experiment"), (plan.datasets, "dataset"), (plan.runs, "run"),
        (plan.checkpoints, "checkpoint")) if count]
    return ", ".join([*parts, f"{filesizeformat(plan.bytes_on_disk)} on disk"])


def _still_writing(rows: list[dict[str, Any]]) -> list[str]:
    # A tracked run's script runs elsewhere, and has no process here to stop: its later writes
    # find the run gone (404). One whose script died would otherwise be stuck "running".
    active = [row for row in rows if row["status"] not in TERMINAL_STATUSES
              and row["experiment__kind"] != ExperimentKind.TRACKED]
    refusals = []
    if active:
        refusals.append(
            f"{_named(active, status=True)} {_say(active, 'is', 'are')} still active: cancel "
            f"{_say(active, 'it', 'them')} first, then delete once "
            f"{_say(active, 'it has', 'they have')} stopped.")
    now = timezone.now()
    recent = {row["pk"]: row for row in rows if _may_be_stopping(row, now)}
    if recent:
        stopped = {run_id for run_id, time in LogLine.objects.filter(
            run_id__in=list(recent), source=_WORKER_SOURCE).values_list("run_id", "time")
            if time >= recent[run_id]["finished_at"]}
        stopping = [row for pk, row in recent.items() if pk not in stopped]
        if stopping:
            wait = max(row["finished_at"] + stop_window() - now for row in stopping)
            refusals.append(
                f"{_named(stopping)} ended moments ago, and "
                f"{_say(stopping, 'its worker', 'their workers')} may still be stopping the "
                f"training process: delete in {max(1, round(wait.total_seconds()))} s.")
    return refusals


def _may_be_stopping(row: dict[str, Any], now: datetime) -> bool:
    """Ended from outside so recently that a worker may still be running its process."""
    return (row["status"] in _ENDED_FROM_OUTSIDE and row["started_at"] is not None
            and row["experiment__kind"] != ExperimentKind.TRACKED
            and row["finished_at"] is not None and row["finished_at"] > now - stop_window())


def _checkpoints_in_use(runs: QuerySet[Run], project_id: int) -> list[str]:
    """Active runs of the project, besides `runs`, that load one of their checkpoints: resume
    from it, evaluate it, or name it in their config (checkpoint:<id>), which the worker
    resolves when the run starts."""
    checkpoint_ids = set(Checkpoint.objects.filter(run__in=runs).values_list("pk", flat=True))
    if not checkpoint_ids:
        return []
    others = (Run.objects.filter(experiment__project_id=project_id, status__in=_ACTIVE)
              .exclude(pk__in=runs)
              .values("pk", "number", "status", "experiment__name", "resumed_from_id",
                      "evaluated_checkpoint_id", "config"))
    users = [row for row in others
             if {row["resumed_from_id"], row["evaluated_checkpoint_id"]} & checkpoint_ids
             or {int(i) for i in _CHECKPOINT_REFERENCE.findall(json.dumps(row["config"]))}
             & checkpoint_ids]
    if not users:
        return []
    return [f"{_named(users, status=True)} {_say(users, 'loads', 'load')} a checkpoint that "
            f"this deletes: wait until {_say(users, 'it ends', 'they end')}, or cancel "
            f"{_say(users, 'it', 'them')}, then delete."]


def _say(rows: list[Any], one: str, many: str) -> str:
    return one if len(rows) == 1 else many


def _named(rows: list[dict[str, Any]], *, status: bool = False) -> str:
    names = [f"{row['experiment__name']} #{row['number']}"
             + (f" ({row['status']})" if status else "") for row in rows[:_NAMED]]
    if len(rows) > _NAMED:
        names.append(f"{len(rows) - _NAMED} more")
    return ", ".join(names)


def _snapshot_blob(row: dict[str, Any]) -> str | None:
    """The dataset blob a run's config snapshot names (runs.services.run_launch), if any; a
    tracked run's config is what its script logged, no snapshot."""
    if row["experiment__kind"] == ExperimentKind.TRACKED or not row["config__dataset"]:
        return None
    name = Path(str(row["config__dataset"])).name
    return name if _SHA256.fullmatch(name) else None


def _blob_referenced(sha256: str, *, except_runs: QuerySet[Run] | None = None,
                     except_datasets: QuerySet[Dataset] | None = None) -> bool:
    """Whether a dataset, or a run's config snapshot, besides those excepted, names the blob."""
    datasets = Dataset.objects.filter(Q(sha256=sha256) | Q(normalized_sha256=sha256))
    runs = (Run.objects.exclude(experiment__kind=ExperimentKind.TRACKED)
            .filter(config__dataset__endswith=f"/{sha256}"))
    if except_datasets is not None:
        datasets = datasets.exclude(pk__in=except_datasets)
    if except_runs is not None:
        runs = runs.exclude(pk__in=except_runs)
    return datasets.exists() or runs.exists()


def _blob_bytes(sha256: str) -> int:
    try:
        return storage.blob_path(sha256).stat().st_size
    except OSError:
        return 0


def _files_remove(folders: Iterable[Path], blobs: Iterable[str], project_id: int) -> None:
    for folder in folders:
        _run_folder_remove(folder)
    for sha256 in blobs:
        try:
            with storage.blobs_lock(exclusive=True):
                if not _blob_referenced(sha256):
                    storage.blob_remove(sha256)
        except (DatabaseError, OSError):
            logger.exception("could not remove dataset blob %s; it stays", sha256)
    cache.delete(disk_use_cache_key(project_id))


def _run_folder_remove(folder: Path) -> None:
    """Remove a run's folder, only ever one that run_folder names under RLAB_RUN_DIR."""
    if folder.parent != Path(settings.RLAB_RUN_DIR) or not RUN_FOLDER_NAME.fullmatch(folder.name):
        logger.error("refusing to remove %s: not a run folder under RLAB_RUN_DIR", folder)
        return
    if folder.is_symlink():
        logger.error("refusing to remove %s: a link, not the run's own folder", folder)
        return
    if not folder.exists():
        return  # the run never ran on a worker, or the web app cannot see its folder

    def failed(function: Any, path: str, exc_info: Any) -> None:
        logger.warning("could not remove %s of deleted run folder %s: %s", path, folder,
                       exc_info[1])

    shutil.rmtree(folder, onerror=failed)
    logger.info("removed run folder %s", folder)


def _delete_where_run_in(model: type, run_ids: list[int]) -> None:
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.get_field("run").column)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {column} IN "
                       f"({', '.join(['%s'] * len(run_ids))})", run_ids)
