"""Fixtures shared by the whole suite. The tests run on real Postgres and Redis (see
webapp/config/settings/test.py); when either cannot be reached the suite fails, never skips."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
import shutil
from pathlib import Path

import pytest
import redis
from django.conf import settings

from training.spec.config import RunConfig

# Tests that call rliable directly import arch before webapp.groups.statistics can tell it to
# leave numba alone (see there): numba's LLVM bindings would break vLLM's start-up in the
# training tests that run later in the same process.
os.environ.setdefault("ARCH_DISABLE_NUMBA", "1")


@pytest.fixture(scope="session", autouse=True)
def _redis_reachable() -> None:
    url = settings.CELERY_BROKER_URL
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis at {url} is not reachable ({exc}); `make services` starts it.",
                    pytrace=False)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="ada", password="lovelace-1843")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="grace", password="hopper-1906")


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def team(user):
    from webapp.teams.services import team_create

    return team_create(name="Reasoning", user=user)


@pytest.fixture
def member_of(team, django_user_model):
    """member_of("viewer") -> a new user with that role in `team`."""
    from webapp.teams.models import Membership

    def make(role: str, username: str | None = None):
        user = django_user_model.objects.create_user(username=username or f"{role}-user",
                                                     password="correct-horse-9")
        Membership.objects.create(team=team, user=user, role=role)
        return user

    return make


@pytest.fixture
def project(team, user):
    from webapp.projects.services import project_create

    return project_create(team=team, name="Arithmetic", description="sums", user=user)


@pytest.fixture
def experiment(project, user):
    from webapp.experiments.services import experiment_create

    config = RunConfig(max_steps=3, prompts_per_step=2, group_size=2).to_dict()
    return experiment_create(project=project, author=user, name="grpo-small", description="",
                             config=config)


# The tiny model as a config names it: registered under the tests' model root.
TINY_MODEL = "local:tiny"


@pytest.fixture(scope="session")
def tiny_model():
    """A random 2-layer Llama with the SmolLM2 tokenizer, loading and training in seconds; its
    folder, registered under the tests' model root (webapp/config/settings/test.py) as
    TINY_MODEL."""
    from training.policies.loading import build_tiny_model

    root = settings.RLAB_MODEL_ROOTS[0]
    folder = build_tiny_model(root / "tiny", seed=0)
    yield folder
    shutil.rmtree(root, ignore_errors=True)


def tiny_run_config(model_dir, **overrides) -> dict:
    """A run config for the tiny model that takes about a second a step; a model folder under
    the tests' model root is named as the web app names it, local:<folder>."""
    model = Path(model_dir)
    root = settings.RLAB_MODEL_ROOTS[0]
    model = f"local:{model.name}" if model.parent == root else str(model)
    values = dict(model=model, max_steps=3, prompts_per_step=2, group_size=2,
                  max_new_tokens=6, micro_batch_size=4, rollouts_logged_per_step=4,
                  rollout_backend="transformers")
    values.update(overrides)
    return RunConfig.from_dict(values, paths=True).to_dict()


@pytest.fixture
def artifact_dir(settings, tmp_path):
    """The artifact store as a folder of the test's own; a web server the test starts is given
    it as RLAB_ARTIFACT_DIR."""
    folder = tmp_path / "artifacts"
    settings.STORAGES = {**settings.STORAGES, "artifacts": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(folder)}}}
    return folder


@pytest.fixture
def save_artifact(artifact_dir):
    """save_artifact(run_or_model, "plots/loss.png", b"...") -> the Artifact: the file in the
    store, its row with size, SHA-256 and the type its name suggests."""
    from webapp.artifacts.models import Artifact, LoggedModel
    from webapp.artifacts.storage import artifact_storage

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
