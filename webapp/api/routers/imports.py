"""Importing a file of rollouts that TRL or veRL wrote (webapp.rollouts.importers reads it) into a
run, for training that ran elsewhere: create a tracked run, post its files, finish it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError

from webapp.api.routers.runs import ensure_active
from webapp.api.schemas import WRITE_ERRORS, ErrorOut
from webapp.rollouts import services as rollout_services
from webapp.rollouts.importers import RolloutFileError, detect_format, scan_files
from webapp.runs.selectors import get_run_for_user
from webapp.teams.models import Role, role_allows

router = Router(tags=["rollouts"])

MAX_FILE_BYTES = 48 * 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file
COPY_CHUNK = 1024 * 1024
FILE_BODY = {"type": "string", "format": "binary"}


class LeftOutOut(Schema):
    column: str
    reason: str


class ImportedOut(Schema):
    received: int = Field(description="Rollouts in the file, already stored ones included.")
    stored: int = Field(description="Rollouts stored now: those not imported before.")
    steps: int = Field(description="Training steps the file has rollouts of.")
    unscored: int = Field(description="Rollouts whose score is NaN or missing (in TRL, every "
                                      "reward function's): stored, shown as unscored.")
    left_out: list[LeftOutOut] = Field(description="Columns not imported (images, bytes), "
                                                   "each with the reason.")


def ensure_importable(run, user) -> None:
    """Files go into a run that is still going, or into a tracked run that has ended (MLflow
    ends a TRL run before its completions are imported) for its author and the team's admins:
    403 for anyone else. A run rlab launched records only what its worker reports: 409 once
    it has ended."""
    if not run.is_terminal:
        return
    if not run.is_tracked:
        ensure_active(run)
    if run.launched_by_id != user.pk and not role_allows(run.user_role, Role.ADMIN):
        raise PermissionDenied(f"Run {run} has ended: only its author and the team's admins "
                               "may import rollouts into it.")


@contextmanager
def received_file(request: HttpRequest) -> Iterator[tuple[str, Path]]:
    """The file's name and a temporary copy of it on disk (removed afterwards): the multipart
    field `file`, or else the whole body, copied a chunk at a time. 413 past MAX_FILE_BYTES,
    read no further."""
    too_large = HttpError(413, f"The file is over {MAX_FILE_BYTES // 2**20} MiB: split it, or "
                               "import it with `manage.py import_rollouts`.")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    # Checked before Django parses a multipart body, which it would spool to disk at any size.
    if declared > MAX_FILE_BYTES + MULTIPART_OVERHEAD:
        raise too_large
    name, source = "", request
    if request.content_type == "multipart/form-data":
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationError("Send the file in a multipart field called 'file', or as "
                                  "the whole body.")
        if upload.size > MAX_FILE_BYTES:
            raise too_large
        name, source = upload.name, upload
    with tempfile.NamedTemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR,
                                     prefix="rollouts-") as copy:
        copied = 0
        while chunk := source.read(COPY_CHUNK):
            copied += len(chunk)
            if copied > MAX_FILE_BYTES:
                raise too_large
            copy.write(chunk)
        copy.flush()
        yield name, Path(copy.name)


@router.post("/runs/{run_id}/rollouts/import",
             response={200: ImportedOut, 409: ErrorOut, 413: ErrorOut, **WRITE_ERRORS},
             summary="Import a TRL or veRL rollouts file",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": FILE_BODY},
                 "multipart/form-data": {"schema": {
                     "type": "object", "required": ["file"],
                     "properties": {"file": FILE_BODY}}}}}})
def rollouts_import(request: HttpRequest, run_id: int,
                    format: Literal["trl", "verl"] | None = Query(
                        None, description="trl: a completions_*.parquet file; verl: a "
                                          "<step>.jsonl dump. By default, trl for Parquet."),
                    rewards: str = Query("", description="TRL: the reward functions' columns, "
                                                         "comma-separated; by default every "
                                                         "column of floats but advantage.")):
    """Store the rollouts of a file that TRL's GRPOTrainer (`log_completions=True`) or veRL
    (`trainer.rollout_data_dir`) wrote, sent as the body or as the multipart field `file`: the
    completions of one prompt in a step form a group. A file with a problem stores nothing, and
    the 422 names each problem's row or line and column. Importing a file again stores nothing
    twice; a step's rollouts must come in one file. A row whose score is NaN or missing is
    stored unscored, and a column of images or bytes is left out: the answer says how many and
    which. Needs the member role; a tracked run that has ended takes files from its author and
    the team's admins (403 for others), a run launched from rlab that has ended none (409)."""
    run = get_run_for_user(request.user, run_id, Role.MEMBER)
    ensure_importable(run, request.user)
    reward_columns = [column.strip() for column in rewards.split(",") if column.strip()]
    with received_file(request) as (name, path):
        try:
            scan = scan_files([(name, path)], format=format or detect_format(path),
                              reward_columns=reward_columns or None)
            # The file was read through without a problem; it is read again to store its
            # rollouts a batch at a time, all or none.
            with transaction.atomic():
                stored = sum(rollout_services.rollouts_import(run_id=run.pk, steps=batch)
                             for batch in scan.batches())
        except RolloutFileError as exc:
            raise ValidationError(exc.messages) from None
    return {"received": scan.rows, "stored": stored, "steps": len(scan.steps),
            "unscored": scan.unscored,
            "left_out": [{"column": column, "reason": reason}
                         for column, reason in scan.left_out.items()]}
