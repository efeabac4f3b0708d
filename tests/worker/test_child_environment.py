"""The training process a real worker starts sees only what training needs of the worker's
environment, and runs in its run's folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_run_config
from tests.stack import start_worker, training_processes
from webapp.experiments.services import experiment_create
from webapp.runs import services

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SECRETS = {"SECRET_KEY": "worker-secret-key-0123456789abcdefghijklmnop",
           "AWS_SECRET_ACCESS_KEY": "aws-secret", "RLAB_TRUSTED_PROXIES": "10.0.0.1"}


def test_the_training_process_gets_no_credentials_and_runs_in_its_folder(
        tmp_path, project, user, tiny_model):
    worker = start_worker(tmp_path, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **SECRETS)
    try:
        experiment = experiment_create(project=project, author=user, name="env", description="",
                                       config=tiny_run_config(tiny_model, max_steps=100_000))
        run = services.run_launch(experiment=experiment, user=user)
        deadline = time.monotonic() + 60
        while not (pids := training_processes(run.pk)):
            assert time.monotonic() < deadline, worker.output()[-4000:]
            time.sleep(0.2)
        child = pids[0]
        environ = dict(item.split("=", 1) for item in Path(f"/proc/{child}/environ").read_bytes()
                       .decode().split("\0") if "=" in item)
        cwd = os.readlink(f"/proc/{child}/cwd")

        for name in ["DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", *SECRETS]:
            assert name not in environ, f"the training process can read {name}"
        assert not [name for name in environ if name.startswith(("DJANGO_", "CELERY_", "AWS_"))]
        assert environ["HF_HUB_OFFLINE"] == "1" and environ["OMP_NUM_THREADS"] == "1"
        assert environ["PATH"] == os.environ["PATH"]
        assert environ["RLAB_RUN_ID"] == str(run.pk)
        assert Path(cwd) == tmp_path / "runs" / f"run-{run.pk}-{run.created_at:%Y%m%d-%H%M%S}"

        run.refresh_from_db()
        deadline = time.monotonic() + 120
        while run.progress_step < 1:  # it imports and trains from its folder
            assert time.monotonic() < deadline and not run.is_terminal, run.error_message
            time.sleep(0.25)
            run.refresh_from_db()
        assert services.run_cancel(run=run, user=user)
    finally:
        worker.stop()
