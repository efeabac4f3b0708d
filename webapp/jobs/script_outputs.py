"""Writes for what a script run's trainer leaves in the run's folder: rollout files imported into
the run, checkpoint folders recorded as its checkpoints. The worker finds them
(worker.script_outputs) and calls these. Each file or folder is taken once: its ScriptOutput row
is written in the same transaction as what it brought in, so a worker that restarts, or a second
look at the same file, adds nothing twice."""

from __future__ import annotations

import logging
from datetime import datetime, timezone as dt_timezone
from pathlib import Path

from django.db import IntegrityError, transaction

from webapp.jobs.models import OutputKind, ScriptOutput
from webapp.rollouts.importers import RolloutFileError, scan_files
from webapp.rollouts.services import rollouts_import
from webapp.runs.ingestion import CheckpointSaved, checkpoints_ingest, logs_append

logger = logging.getLogger(__name__)

# How much of an import's problems the run's log and the ScriptOutput keep.
PROBLEMS_SHOWN = 20


def script_outputs_taken(*, run_id: int) -> set[tuple[str, str]]:
    """(kind, path) of every file and folder of the run already taken in or given up on."""
    return set(ScriptOutput.objects.filter(run_id=run_id).values_list("kind", "path"))


def script_rollouts_import(*, run_id: int, relative: str, path: Path, format: str,
                           size: int) -> ScriptOutput | None:
    """Import one rollout file of the run (TRL Parquet or veRL JSON lines; the step comes from
    the file). A file that cannot be read is recorded with its problems and named in the run's
    log, and nothing of it is stored. None when the file was already taken."""
    try:
        scan = scan_files([(relative, path)], format=format)
    except RolloutFileError as exc:
        return _give_up(run_id=run_id, kind=OutputKind.ROLLOUTS, relative=relative, size=size,
                        problems=exc.messages)
    except OSError as exc:
        return _give_up(run_id=run_id, kind=OutputKind.ROLLOUTS, relative=relative, size=size,
                        problems=[f"it cannot be read ({exc.strerror or exc})."])
    try:
        with transaction.atomic():
            output = ScriptOutput.objects.create(run_id=run_id, kind=OutputKind.ROLLOUTS,
                                                 path=relative, size=size)
            stored = sum(rollouts_import(run_id=run_id, steps=batch) for batch in scan.batches())
            steps = ", ".join(str(step) for step in scan.steps)
            _log(run_id, "info", f"Imported {stored} rollouts of step {steps} from {relative}.")
    except IntegrityError:
        return None  # taken meanwhile (another look at the same file)
    except RolloutFileError as exc:  # changed between the two reads
        return _give_up(run_id=run_id, kind=OutputKind.ROLLOUTS, relative=relative, size=size,
                        problems=exc.messages)
    return output


def script_checkpoint_record(*, run_id: int, relative: str, folder: Path, step: int,
                             size: int) -> ScriptOutput | None:
    """Record a checkpoint folder in Hugging Face format as the run's checkpoint at `step`, so
    that evaluation jobs and comparisons can use it. None when it was already recorded."""
    try:
        with transaction.atomic():
            output = ScriptOutput.objects.create(run_id=run_id, kind=OutputKind.CHECKPOINT,
                                                 path=relative, size=size)
            checkpoints_ingest(run_id=run_id, checkpoints=[
                CheckpointSaved(step=step, path=str(folder))])
            _log(run_id, "info", f"Recorded the checkpoint {relative} (step {step}).")
    except IntegrityError:
        return None
    return output


def _give_up(*, run_id: int, kind: str, relative: str, size: int,
             problems: list[str]) -> ScriptOutput | None:
    shown = problems[:PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    text = "\n".join(shown) + (f"\n… and {more} more problems." if more > 0 else "")
    try:
        with transaction.atomic():
            output = ScriptOutput.objects.create(run_id=run_id, kind=kind, path=relative,
                                                 size=size, problem=text)
            _log(run_id, "warning", f"Could not import {relative}; the other files are still "
                                    f"imported. {text}")
    except IntegrityError:
        return None
    logger.info("run %s: could not import %s: %s", run_id, relative, shown[0] if shown else "")
    return output


def _log(run_id: int, level: str, message: str) -> None:
    logs_append(run_id=run_id, lines=[(datetime.now(dt_timezone.utc), level, "worker", message)])
