"""Runs and datasets with rows and files on disk, as workers and uploads leave them: what the
deletion and backup tests delete, back up and restore."""

from __future__ import annotations

from datetime import timedelta
from io import BytesIO
from pathlib import Path

from django.utils import timezone

from webapp.datasets import storage
from webapp.datasets.models import Dataset
from webapp.reviews import services as reviews
from webapp.runs import ingestion, services
from webapp.runs.files import run_folder
from webapp.runs.models import Checkpoint, Rollout, Run, RunStatus

CHECKPOINT_BYTES = 1000


def run_with_data(experiment, user, *, status: str = RunStatus.SUCCEEDED,
                  ended_ago: timedelta = timedelta(hours=1), checkpoints: int = 2,
                  steps: int = 3, **fields) -> Run:
    """A launched run that a worker ran: `status` (a terminal one ended `ended_ago`), metric
    points, rollouts with an annotation, log lines, a comment, a star and a tag, and
    `checkpoints` checkpoint folders of CHECKPOINT_BYTES bytes each in the run's folder."""
    run = services.run_launch(experiment=experiment, user=user)
    now = timezone.now()
    ended = status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED,
                       RunStatus.INTERRUPTED)
    Run.objects.filter(pk=run.pk).update(
        status=status, worker="" if status == RunStatus.QUEUED else "test-worker",
        started_at=None if status == RunStatus.QUEUED else now - ended_ago - timedelta(minutes=5),
        finished_at=now - ended_ago if ended else None, **fields)
    run.refresh_from_db()
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=step, value=0.5, wall_time=now)
        for step in range(1, steps + 1) for key in ("reward/mean", "loss/policy")])
    for step in range(1, steps + 1):
        ingestion.rollouts_ingest(run_id=run.pk, step=step, items=[
            {"prompt": "1 + 1?", "completion": str(sample), "reward": float(sample), "group": 0,
             "sample_index": sample} for sample in range(2)])
    ingestion.logs_append(run_id=run.pk, lines=[(now, "info", "trainer", "step 1")])
    folder = run_folder(run.pk, run.created_at)
    saved = []
    for step in range(1, checkpoints + 1):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        (folder / f"checkpoint-{step}" / "model.safetensors").write_bytes(
            bytes([step]) * CHECKPOINT_BYTES)
        saved.append(ingestion.CheckpointSaved(step=step, path=str(folder / f"checkpoint-{step}")))
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=saved)
    reviews.comment_create(run=run, author=user, body="looks right")
    reviews.annotation_create(rollout=Rollout.objects.filter(run=run).first(), author=user,
                              label="correct", note="")
    reviews.run_star_toggle(run=run, user=user)
    reviews.run_tag_add(run=run, actor=user, name="baseline")
    return run


def checkpoint_of(run: Run) -> Checkpoint:
    return run.checkpoints.order_by("-step").first()


def dataset_with_files(project, user, *, name: str = "sums",
                       rows: bytes = b'{"prompt": "1 + 1?", "answer": 2}\n') -> Dataset:
    """A prompts dataset whose uploaded file and normalised rows are blobs in the store."""
    original, _ = storage.blob_put_file(BytesIO(b"prompt,answer\n1 + 1?,2\n" + rows))
    normalized, _ = storage.blob_put_file(BytesIO(rows))
    return Dataset.objects.create(
        project=project, name=name, kind="prompts", format="csv",
        original_filename=f"{name}.csv", size_bytes=storage.blob_path(original).stat().st_size,
        row_count=1, columns=["prompt", "answer"],
        column_mapping={"prompt": "prompt", "answer": "answer"}, sha256=original,
        normalized_sha256=normalized, uploaded_by=user)


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by relative path, with its bytes."""
    if not root.exists():
        return {}
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}
