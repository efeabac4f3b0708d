"""Writing artifacts: a file uploaded into a run's or a logged model's artifacts (checked, within
the size limits, replacing what was at its path), the Hugging Face model folders among them
recorded as checkpoints of the run, and logged models created, tagged and finalised."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q, Sum
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from webapp.artifacts import storage
from webapp.artifacts.models import Artifact, LoggedModel, LoggedModelStatus
from webapp.artifacts.paths import artifact_path_check, parent_folders
from webapp.experiments.models import Experiment
from webapp.runs.broker import task_send
from webapp.runs.files import run_folder
from webapp.runs.models import Checkpoint, MetricPoint, Run

logger = logging.getLogger(__name__)

Owner = Run | LoggedModel

# A Hugging Face model folder: its config and its weights, whole or as shards an index lists.
HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
HF_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
HF_INDEX_MAX_BYTES = 16 * 1024 * 1024
CHECKPOINT_STEP = re.compile(r"checkpoint-([0-9]{1,18})")
# The worker task that runs checkpoint_copy (worker.tasks.artifact_checkpoint_copy).
CHECKPOINT_COPY_TASK = "worker.tasks.artifact_checkpoint_copy"


class ArtifactRefused(Exception):
    """An upload or a call that cannot be done as asked; the message says why and what to do."""


def owner_q(owner: Owner, prefix: str = "") -> Q:
    """The owner's artifacts (under the folder `prefix`, if given)."""
    q = Q(run=owner) if isinstance(owner, Run) else Q(logged_model=owner)
    return q & Q(path__startswith=f"{prefix}/") if prefix else q


def owner_prefix(owner: Owner) -> str:
    """Where the store keeps the owner's files (as Artifact.storage_name)."""
    return f"runs/{owner.pk}" if isinstance(owner, Run) else f"models/{owner.pk}"


def _budget_run(owner: Owner) -> Run | None:
    """The run whose limit the owner's files count against: a logged model's files count
    against the run that logged it, so a run cannot pass its limit one checkpoint at a time."""
    return owner if isinstance(owner, Run) else owner.source_run


def _bytes_used(owner: Owner, *, except_path: str) -> int:
    run = _budget_run(owner)
    if run is not None:
        rows = Artifact.objects.filter(Q(run=run) | Q(logged_model__source_run=run))
    else:
        rows = Artifact.objects.filter(logged_model=owner)
    rows = rows.exclude(owner_q(owner) & Q(path=except_path))
    return rows.aggregate(total=Sum("size"))["total"] or 0


# What each limit bounds, as its refusal says it.
LIMITS = {
    "RLAB_ARTIFACT_MAX_FILE_BYTES": "An artifact file",
    "RLAB_ARTIFACT_MAX_RUN_BYTES": "A run's artifacts, with those of the models it logged,",
}


def _room(owner: Owner, path: str) -> tuple[int, str]:
    """The most bytes the file at `path` may have, and the setting that bounds it."""
    room = settings.RLAB_ARTIFACT_MAX_RUN_BYTES - _bytes_used(owner, except_path=path)
    if room < settings.RLAB_ARTIFACT_MAX_FILE_BYTES:
        return max(room, 0), "RLAB_ARTIFACT_MAX_RUN_BYTES"
    return settings.RLAB_ARTIFACT_MAX_FILE_BYTES, "RLAB_ARTIFACT_MAX_FILE_BYTES"


def _refuse_if_too_large(size: int, limit: int, setting: str) -> None:
    if size > limit:
        most = getattr(settings, setting)
        raise ArtifactRefused(f"{LIMITS[setting]} may take at most {filesizeformat(most)} "
                              f"({most:,} bytes; {setting}): this file would pass that, so "
                              "nothing was stored. Log fewer or smaller files, or ask an "
                              "administrator to raise the limit.")


def _refuse_file_folder_clash(owner: Owner, path: str) -> None:
    """A path cannot be both a file and a folder, in a folder store or as MLflow lists it."""
    if Artifact.objects.filter(owner_q(owner), path__in=parent_folders(path)).exists():
        raise ArtifactRefused(f"Cannot store {path!r}: a folder of it is a file already.")
    if Artifact.objects.filter(owner_q(owner, path)).exists():
        raise ArtifactRefused(f"Cannot store {path!r}: it is a folder of artifacts already.")


def _spool(stream: BinaryIO, limit: int, setting: str) -> tuple[Path, int, str]:
    """Read `stream` into a file of the store's spool, stopping as soon as it passes `limit`
    bytes; (the file, its size, its SHA-256)."""
    digest = hashlib.sha256()
    size = 0
    spooled = storage.incoming_folder() / secrets.token_hex(16)
    try:
        with open(spooled, "wb") as out:
            while chunk := stream.read(storage.CHUNK_BYTES):
                size += len(chunk)
                _refuse_if_too_large(size, limit, setting)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        spooled.unlink(missing_ok=True)
        raise
    return spooled, size, digest.hexdigest()


def artifact_upload(*, owner: Owner, path: str, stream: BinaryIO, content_type: str = "",
                    declared_size: int | None = None) -> Artifact:
    """Store what `stream` holds at `path` among the owner's artifacts, replacing the file
    there. Refused (ArtifactRefused, ArtifactPathError) with nothing stored, and what was there
    kept, when the path is bad or the file would pass the per-file or per-run limit: a declared
    size is checked before a byte is read, the bytes as they are read."""
    artifact_path_check(path)
    _refuse_file_folder_clash(owner, path)
    limit, setting = _room(owner, path)
    if declared_size is not None:
        _refuse_if_too_large(declared_size, limit, setting)
    spooled, size, sha256 = _spool(stream, limit, setting)
    try:
        with transaction.atomic():
            # Locked, so that two uploads at once cannot both take the last of a run's room;
            # only while the row is written: a bucket may take minutes to take the file.
            locked = _budget_run(owner) or owner
            type(locked).objects.select_for_update().filter(pk=locked.pk).exists()
            limit, setting = _room(owner, path)
            _refuse_if_too_large(size, limit, setting)
            previous = Artifact.objects.filter(owner_q(owner), path=path).first()
            artifact, _ = Artifact.objects.update_or_create(
                **({"run": owner} if isinstance(owner, Run) else {"logged_model": owner}),
                path=path, defaults={"size": size, "sha256": sha256,
                                     "content_type": content_type[:100],
                                     "created_at": timezone.now()})
        try:
            storage.file_put(artifact.storage_name, spooled)
        except BaseException:
            # The store kept the file it had (a rename or a PUT is whole or nothing): so does
            # the row.
            if previous is None:
                artifact.delete()
            else:
                previous.save()
            raise
        with transaction.atomic():
            checkpoint_discover(owner=owner, folder=path.rpartition("/")[0])
    finally:
        spooled.unlink(missing_ok=True)
    return artifact


def artifact_folder_names(owner: Owner, folder: str) -> set[str]:
    """The names of the files directly in `folder` ("" for the top) of the owner's artifacts."""
    start = len(folder) + 1 if folder else 0
    paths = Artifact.objects.filter(owner_q(owner, folder)).values_list("path", flat=True)
    return {path[start:] for path in paths if "/" not in path[start:]}


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _weights_complete(owner: Owner, folder: str, names: set[str]) -> bool:
    if any(name in names for name in HF_WEIGHTS):
        return True
    for index in HF_INDEXES:
        if index not in names:
            continue
        name = f"{owner_prefix(owner)}/{_join(folder, index)}"
        try:
            with storage.file_open(name) as stream:
                shards = set(json.loads(stream.read(HF_INDEX_MAX_BYTES))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            logger.warning("%s: %s is no readable weight index", owner_prefix(owner), index)
            return False
        return bool(shards) and all(isinstance(s, str) and s in names for s in shards)
    return False


def is_model_folder(owner: Owner, folder: str) -> bool:
    """Whether the owner's artifacts hold a whole Hugging Face model folder at `folder`: its
    config.json, and its weights (one file, or every shard its index names)."""
    names = artifact_folder_names(owner, folder)
    return HF_CONFIG in names and _weights_complete(owner, folder, names)


def _checkpoint_step(owner: Owner, run: Run, folder: str) -> int:
    """The step in the nearest `checkpoint-<N>` of the folder's path (or the logged model's
    name); otherwise the run's last logged step, the model being the run's latest."""
    names = [*reversed(folder.split("/"))]
    if isinstance(owner, LoggedModel):
        names.append(owner.name)
    for name in names:
        if match := CHECKPOINT_STEP.fullmatch(name):
            return int(match.group(1))
    return MetricPoint.objects.filter(run=run).aggregate(step=Max("step"))["step"] or 0


def checkpoint_discover(*, owner: Owner, folder: str) -> None:
    """When the owner's artifacts now hold a whole model folder at `folder`, make it an
    evaluable checkpoint of the run: a folder store's folder is one already; a bucket's is
    copied into the run's folder by a worker (checkpoint_copy), after the commit, and recorded
    there. Called after each upload, so a folder whose tokenizer comes after its weights is
    copied again with it."""
    run = _budget_run(owner)
    if run is None or not is_model_folder(owner, folder):
        return
    if storage.is_local():
        step = _checkpoint_step(owner, run, folder)
        checkpoint_record(run=run, step=step,
                          path=storage.local_path(_join(owner_prefix(owner), folder)))
        return
    model_id = owner.pk if isinstance(owner, LoggedModel) else None
    # A worker copies it, not the request: a checkpoint is gigabytes, and the upload that
    # completed it must answer at once. A message the broker refuses is logged; the folder's
    # next upload sends another.
    transaction.on_commit(lambda: task_send(
        task=CHECKPOINT_COPY_TASK, args=[run.pk, model_id, folder],
        what=f"run {run.pk}: the copy of model folder {folder!r}"))


def checkpoint_record(*, run: Run, step: int, path: Path) -> Checkpoint | None:
    """The run's checkpoint at `step` in the folder `path`; None (logged) when the run has
    another folder at that step already."""
    checkpoint, _ = Checkpoint.objects.get_or_create(run=run, step=step,
                                                     defaults={"path": str(path)})
    if checkpoint.path != str(path):
        logger.warning("run %s: model folder %s not recorded as a checkpoint: step %s is %s "
                       "already", run.pk, path, step, checkpoint.path)
        return None
    return checkpoint


def checkpoint_copy(*, run_id: int, logged_model_id: str | None, folder: str) -> None:
    """Copy a model folder of a bucket store into the run's folder, where workers load
    checkpoints from, and record it as a checkpoint there. Files copied before and unchanged
    since are kept; an owner or folder gone meanwhile is left alone."""
    run = Run.objects.filter(pk=run_id).first()
    owner = run if logged_model_id is None else LoggedModel.objects.filter(
        pk=logged_model_id, source_run_id=run_id).first()
    if run is None or owner is None or not is_model_folder(owner, folder):
        return
    target = run_folder(run.pk, run.created_at) / "artifacts"
    if isinstance(owner, LoggedModel):
        target = target / "models" / owner.pk
    target = target / folder if folder else target
    start = len(folder) + 1 if folder else 0
    for artifact in Artifact.objects.filter(owner_q(owner, folder)):
        local = target / artifact.path[start:]
        if (local.is_file() and local.stat().st_size == artifact.size
                and local.stat().st_mtime >= artifact.created_at.timestamp()):
            continue
        storage.file_copy_to(artifact.storage_name, local)
    checkpoint_record(run=run, step=_checkpoint_step(owner, run, folder), path=target)


def artifact_prefixes(*, runs: Iterable[int] = (), experiments: Iterable[int] = ()) -> list[str]:
    """The store prefixes of the runs' artifacts, of the models they logged, and of the
    experiments' models: what deleting them leaves to remove from the store."""
    runs, experiments = list(runs), list(experiments)
    models = LoggedModel.objects.filter(Q(source_run_id__in=runs)
                                        | Q(experiment_id__in=experiments))
    return ([f"runs/{pk}" for pk in runs]
            + [f"models/{pk}" for pk in models.values_list("pk", flat=True)])


def artifact_files_remove_on_commit(prefixes: list[str]) -> None:
    """Once the caller's transaction commits, remove the prefixes' files from the store; a
    failure is logged, never fatal: the rows are gone by then."""

    def remove() -> None:
        try:
            storage.prefixes_remove(prefixes)
        except Exception:
            logger.exception("could not remove artifact files under %s; they stay",
                             ", ".join(prefixes[:5]))

    if prefixes:
        transaction.on_commit(remove)


def logged_model_create(*, experiment: Experiment, name: str | None, source_run: Run | None,
                        model_type: str, params: dict[str, str], tags: dict[str, str],
                        ) -> LoggedModel:
    """A logged model, pending until its files are uploaded; MLflow names one the script did
    not name."""
    return LoggedModel.objects.create(
        experiment=experiment, source_run=source_run, name=name or f"model-{secrets.token_hex(4)}",
        model_type=model_type, params=params, tags=tags)


def logged_model_update(*, model: LoggedModel, status: str | None = None,
                        params: dict[str, str] | None = None,
                        tags: dict[str, str] | None = None,
                        tags_removed: Iterable[str] = ()) -> LoggedModel:
    """Finalise the model (ready or failed), add parameters, set or remove tags."""
    with transaction.atomic():
        model = LoggedModel.objects.select_for_update().get(pk=model.pk)
        if status is not None:
            model.status = LoggedModelStatus(status)
        model.params = {**model.params, **(params or {})}
        model.tags = {key: value for key, value in {**model.tags, **(tags or {})}.items()
                      if key not in set(tags_removed)}
        model.save()
    return model


def logged_model_output(*, model: LoggedModel, run: Run) -> None:
    """Record the run as the one that logged the model, unless another run did."""
    LoggedModel.objects.filter(pk=model.pk, source_run__isnull=True).update(source_run=run)


def logged_model_delete(*, model: LoggedModel) -> None:
    """Delete the model and its files (once committed)."""
    with transaction.atomic():
        LoggedModel.objects.filter(pk=model.pk).delete()
        artifact_files_remove_on_commit([f"models/{model.pk}"])
