"""A logged model, and images, for the artifact pages' tests (artifacts themselves are made by
tests/conftest.py's `save_artifact`)."""

from __future__ import annotations

import io

import pytest

from webapp.artifacts.models import LoggedModel


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
