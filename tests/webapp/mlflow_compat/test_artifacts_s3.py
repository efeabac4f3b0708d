"""Artifacts in an S3-compatible bucket (full mode: RLAB_ARTIFACT_BUCKET): moto's S3 server on
a free local port stands for MinIO or AWS, the web server and a Celery worker are the real ones,
pointed at it as an installation's environment points them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import boto3
import pytest
from tests.stack import start_s3, start_web, start_worker, wait_for_run
from training.spec.evaluation_config import EvalConfig
from webapp.artifacts.models import Artifact
from webapp.runs import model_sources
from webapp.runs.models import Checkpoint, Run

# Room for the tiny model's weights (13 MB), not for much more.
MAX_FILE = 16 * 1024 * 1024
BUCKET = "rlab-artifacts"
PREFIX = "team-a"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """An S3 endpoint with an empty bucket; the environment the installation would set."""
    server, endpoint = start_s3(tmp_path_factory.mktemp("s3"))
    env = {"RLAB_ARTIFACT_BUCKET": BUCKET, "RLAB_ARTIFACT_PREFIX": PREFIX,
           "RLAB_ARTIFACT_S3_ENDPOINT": endpoint,
           "RLAB_ARTIFACT_S3_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    bucket = boto3.resource("s3", endpoint_url=env["RLAB_ARTIFACT_S3_ENDPOINT"],
                            region_name="us-east-1", aws_access_key_id="test",
                            aws_secret_access_key="test").Bucket(BUCKET)
    bucket.create()
    yield env, bucket
    server.stop()


@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory, s3):
    env, _ = s3
    server, base_url = start_web(tmp_path_factory.mktemp("web"),
                                 RLAB_ARTIFACT_MAX_FILE_BYTES=str(MAX_FILE), **env)
    yield base_url
    server.stop()


def test_files_go_to_the_bucket_and_come_back_byte_for_byte(tracking, s3, tmp_path):
    import mlflow

    _, bucket = s3
    data = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "blob.bin").write_bytes(data)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "blob.bin"), "nested/deeper")
        mlflow.log_text("héllo", "notes.txt")
    run_id = run.info.run_id

    key = f"{PREFIX}/runs/{run_id}/nested/deeper/blob.bin"
    assert bucket.Object(key).get()["Body"].read() == data
    client = mlflow.MlflowClient()
    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id)] == [
        ("nested", True), ("notes.txt", False)]
    assert [(f.path, f.file_size) for f in client.list_artifacts(run_id, "nested/deeper")] == [
        ("nested/deeper/blob.bin", len(data))]
    back = Path(client.download_artifacts(run_id, "", dst_path=str(tmp_path / "back")))
    assert (back / "nested" / "deeper" / "blob.bin").read_bytes() == data
    assert (back / "notes.txt").read_text() == "héllo"
    # nothing was kept on the web server's disk
    assert not Path(os.environ["RLAB_ARTIFACT_DIR"], "runs", run_id).exists()


def test_a_file_over_the_limit_never_reaches_the_bucket(tracking, s3, tmp_path):
    import mlflow
    from requests.exceptions import HTTPError

    _, bucket = s3
    (tmp_path / "big.bin").write_bytes(b"z" * (MAX_FILE + 1))
    with mlflow.start_run() as run:
        with pytest.raises(HTTPError) as raised:
            mlflow.log_artifact(str(tmp_path / "big.bin"))

    assert raised.value.response.status_code == 400
    assert "RLAB_ARTIFACT_MAX_FILE_BYTES" in raised.value.response.json()["message"]
    assert not list(bucket.objects.filter(Prefix=f"{PREFIX}/runs/{run.info.run_id}/"))
    assert not Artifact.objects.filter(run_id=int(run.info.run_id)).exists()


def test_a_model_folder_in_the_bucket_is_copied_by_a_worker_and_evaluable(
        tracking, s3, project, tiny_model, tmp_path):
    import mlflow
    from transformers import AutoModelForCausalLM

    env, _ = s3
    (tmp_path / "worker").mkdir()
    worker = start_worker(tmp_path / "worker", **env)
    try:
        folder = tmp_path / "checkpoint-5"
        shutil.copytree(tiny_model, folder)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(folder), "checkpoint-5")
        run = Run.objects.get(pk=int(run.info.run_id))
        wait_for_run(run, lambda r: r.checkpoints.exists(), timeout=60, process=worker)
    finally:
        worker.stop()

    checkpoint = Checkpoint.objects.get(run=run)
    assert checkpoint.step == 5
    assert checkpoint.path.startswith(str(tmp_path / "worker" / "runs"))
    assert (Path(checkpoint.path) / "model.safetensors").read_bytes() == (
        folder / "model.safetensors").read_bytes()
    config = EvalConfig(model=f"checkpoint:{checkpoint.pk}").to_dict()
    assert model_sources.config_for_worker(project_id=project.pk, config=config,
                                           config_class=EvalConfig)["model"] == checkpoint.path
    assert AutoModelForCausalLM.from_pretrained(checkpoint.path).config.num_hidden_layers == 2


def test_a_preview_asks_the_bucket_for_its_first_bytes_only(s3, settings, project, user):
    import io

    from webapp.artifacts import storage
    from webapp.artifacts.services import artifact_upload
    from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

    env, _ = s3
    settings.STORAGES = {**settings.STORAGES, "artifacts": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": BUCKET, "location": PREFIX, "file_overwrite": True,
                    "endpoint_url": env["RLAB_ARTIFACT_S3_ENDPOINT"], "region_name": "us-east-1",
                    "access_key": "test", "secret_key": "test"}}}
    run = tracked_run_create(experiment=tracked_experiment_get_or_create(
        project=project, user=user, name="previews"), user=user)
    long = artifact_upload(owner=run, path="long.txt", stream=io.BytesIO(b"0123456789" * 1000))
    empty = artifact_upload(owner=run, path="empty.txt", stream=io.BytesIO(b""))

    with storage.file_open(long.storage_name, first=12) as stream:
        assert stream.read() == b"012345678901"
    with storage.file_open(empty.storage_name, first=12) as stream:
        assert stream.read() == b""
    with pytest.raises(FileNotFoundError):
        storage.file_open("runs/0/missing.txt")
