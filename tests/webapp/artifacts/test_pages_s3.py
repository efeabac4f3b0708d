"""The artifact pages on an S3-compatible bucket (full mode's store), served by moto's S3
server over HTTP: previews read the first bytes of an object, downloads stream it whole."""

from __future__ import annotations

import boto3
import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from tests.stack import start_s3
from tests.webapp.artifacts.conftest import image_bytes
from webapp.artifacts.previews import TEXT_PREVIEW_BYTES
from webapp.runs.services import run_launch

pytestmark = pytest.mark.django_db

BUCKET = "rlab-artifacts"
KEYS = {"access_key": "testing", "secret_key": "testing"}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    server, endpoint = start_s3(tmp_path_factory.mktemp("s3"))
    yield endpoint
    server.stop()


@pytest.fixture
def artifact_dir(settings, s3_endpoint):
    """The artifact store as full mode configures it, on a fresh bucket under a prefix."""
    s3 = boto3.resource("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = s3.Bucket(BUCKET)
    bucket.create()
    settings.STORAGES = {**settings.STORAGES, "artifacts": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": BUCKET, "location": "rlab", "endpoint_url": s3_endpoint,
                    "region_name": "us-east-1", "file_overwrite": True, "default_acl": None,
                    "querystring_auth": False, **KEYS}}}
    yield bucket
    bucket.objects.all().delete()
    bucket.delete()


@pytest.fixture
def run(experiment, user):
    return run_launch(experiment=experiment, user=user)


def _download(response) -> bytes:
    async def read() -> bytes:
        return b"".join([chunk async for chunk in response])

    return async_to_sync(read)()


def test_a_download_streams_the_object_byte_for_byte(signed_in, run, save_artifact,
                                                    artifact_dir):
    data = bytes(range(256)) * 12_000  # 3 MB: several chunks
    artifact = save_artifact(run, "weights/adapter.bin", data)
    assert artifact_dir.Object(f"rlab/{artifact.storage_name}").content_length == len(data)
    response = signed_in.get(reverse("artifacts:download", args=[run.pk, artifact.pk]))
    assert response["Content-Length"] == str(len(data))
    assert _download(response) == data


def test_a_long_text_object_is_previewed_from_its_first_bytes(signed_in, run, save_artifact):
    artifact = save_artifact(run, "train.log", b"line of log\n" * 20_000)
    body = signed_in.get(reverse("artifacts:detail", args=[run.pk, artifact.pk])).content.decode()
    assert 'id="preview-cut"' in body
    assert body.count("line of log") == TEXT_PREVIEW_BYTES // 12


def test_an_image_object_is_shown(signed_in, run, save_artifact):
    data = image_bytes("WEBP")
    artifact = save_artifact(run, "plots/reward.webp", data)
    body = signed_in.get(reverse("artifacts:detail", args=[run.pk, artifact.pk])).content.decode()
    assert 'id="artifact-image"' in body
    response = signed_in.get(reverse("artifacts:image", args=[run.pk, artifact.pk]))
    assert response["Content-Type"] == "image/webp"
    assert _download(response) == data


def test_a_missing_object_is_404(signed_in, run, save_artifact, artifact_dir):
    artifact = save_artifact(run, "gone.txt", b"bye")
    artifact_dir.Object(f"rlab/{artifact.storage_name}").delete()
    assert signed_in.get(reverse("artifacts:download", args=[run.pk, artifact.pk])
                         ).status_code == 404
    body = signed_in.get(reverse("artifacts:detail", args=[run.pk, artifact.pk])).content.decode()
    assert 'id="artifact-missing"' in body
