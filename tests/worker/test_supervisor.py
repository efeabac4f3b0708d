"""The supervisor in the test process, for what it decides before starting a training process."""

from __future__ import annotations

import pytest

from tests.stack import training_processes
from webapp.runs import services
from webapp.runs.models import RunStatus
from worker.supervisor import RunSupervisor

pytestmark = pytest.mark.django_db


def test_a_run_whose_folder_cannot_be_made_fails_saying_what_to_set(experiment, user, settings,
                                                                    tmp_path):
    not_a_folder = tmp_path / "runs"
    not_a_folder.write_text("a file where the run folders should go")
    settings.RLAB_RUN_DIR = not_a_folder
    run = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=run.pk, worker="w")

    RunSupervisor(run_id=run.pk, config=run.config, created_at=run.created_at).supervise()

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "RLAB_RUN_DIR" in run.error_message and "run's folder" in run.error_message
    assert training_processes(run.pk) == []
