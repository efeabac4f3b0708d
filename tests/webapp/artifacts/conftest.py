"""Artifacts for the artifact pages' tests, made as the store holds them: the bytes saved in the
artifact store at the Artifact's storage name, and its row. The store is a folder of the test's
own (`artifact_dir`), which a web server the test starts is given as RLAB_ARTIFACT_DIR."""

from __future__ import annotations

import hashlib
import io
import mimetypes

import pytest

from webapp.artifacts.models import Artifact, LoggedModel
from webapp.artifacts.storage import artifact_storage


@pytest.fixture
def artifact_dir(settings, tmp_path):
    folder = tmp_path / "artifacts"
    settings.STORAGES = {**settings.STORAGES, "artifacts": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(folder)}}}
    return folder


@pytest.fixture
def save_artifact(artifact_dir):
    """save_artifact(run_or_model, "plots/loss.png", b"...") -> the Artifact: the file in the
    store, its row with size, SHA-256 and the type its name suggests."""

    def save(owner, path: str, data: bytes, *, content_type: str | None = None) -> Artifact:
        owner_field = "logged_model" if isinstance(owner, LoggedModel) else "run"
        if content_type is None:
            content_type = mimetypes.guess_type(path)[0] or ""
        artifact = Artifact(**{owner_field: owner}, path=path, size=len(data),
                            sha256=hashlib.sha256(data).hexdigest(), content_type=content_type)
        stored = artifact_storage().save(artifact.storage_name, io.BytesIO(data))
        assert stored == artifact.storage_name
        artifact.save()
        return artifact

    return save


@pytest.fixture
def logged_model(run):
    return LoggedModel.objects.create(experiment=run.experiment, source_run=run,
                                      name="policy", model_type="transformers")


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """An image in `fmt` (Pillow's name: "PNG", "JPEG", "GIF", "WEBP"): a gradient."""
    from PIL import Image

    image = Image.new("RGB", size)
    image.putdata([(x * 4 % 256, y * 5 % 256, 160) for y in range(size[1]) for x in range(size[0])])
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()
