"""A tracked experiment's runs hold only what their scripts logged: no training settings."""

import pytest
from django.urls import reverse

from webapp.runs import services, tracking
from webapp.runs.models import RunStatus

pytestmark = pytest.mark.django_db


def test_a_tracked_experiment_page_shows_runs_without_max_steps(signed_in, project, user):
    experiment = tracking.tracked_experiment_get_or_create(project=project, user=user,
                                                           name="from-a-script")
    run = tracking.tracked_run_create(experiment=experiment, user=user, params={"lr": "1e-5"})
    services.run_succeed(run_id=run.pk)
    run.refresh_from_db()
    assert "max_steps" not in run.config and run.status == RunStatus.SUCCEEDED

    response = signed_in.get(experiment.get_absolute_url())
    assert response.status_code == 200
    assert f"#{run.number}" in response.content.decode()
    assert signed_in.get(reverse("runs:detail", args=[run.pk])).status_code == 200
    assert run.checkpoint_to_resume() is None
