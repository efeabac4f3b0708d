"""Deleting an experiment (or an evaluation): admins only; its runs, their rows and folders go."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from tests.webapp.lifecycle import checkpoint_of, run_with_data
from webapp.deletion.services import experiment_delete
from webapp.experiments.models import Experiment
from webapp.experiments.services import experiment_create
from webapp.projects.activity import Verb
from webapp.reviews.models import Activity
from webapp.runs import services, tracking
from webapp.runs.files import run_folder
from webapp.runs.models import Run, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def folders(settings, tmp_path):
    settings.RLAB_RUN_DIR = tmp_path / "runs"
    settings.RLAB_DATASET_DIR = tmp_path / "datasets"


def test_an_admin_deletes_an_experiment_with_its_runs_and_their_folders(
        signed_in, experiment, user, django_capture_on_commit_callbacks):
    runs = [run_with_data(experiment, user) for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("deletion:experiment", args=[experiment.pk]))
    assert response.status_code == 302
    assert response["Location"] == experiment.project.get_absolute_url()
    assert not Experiment.objects.filter(pk=experiment.pk).exists()
    assert not Run.objects.filter(pk__in=[run.pk for run in runs]).exists()
    assert not any(run_folder(run.pk, run.created_at).exists() for run in runs)
    entry = Activity.objects.get(verb=Verb.DELETED)
    assert entry.detail.startswith(f"experiment {experiment.name} (1 experiment, 2 runs, "
                                   f"4 checkpoints")


def test_the_confirmation_page_counts_every_run(signed_in, experiment, user):
    for _ in range(2):
        run_with_data(experiment, user)
    page = signed_in.get(reverse("deletion:experiment", args=[experiment.pk])).content.decode()
    assert 'id="plan-runs">2<' in page and 'id="plan-checkpoints">4<' in page


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_only_an_admin_deletes_an_experiment(client, experiment, member_of, role):
    client.force_login(member_of(role))
    assert client.get(reverse("deletion:experiment", args=[experiment.pk])).status_code == 403
    assert client.post(reverse("deletion:experiment", args=[experiment.pk])).status_code == 403
    assert Experiment.objects.filter(pk=experiment.pk).exists()


def test_an_outsider_gets_404(client, experiment, other_user):
    client.force_login(other_user)
    assert client.post(reverse("deletion:experiment", args=[experiment.pk])).status_code == 404


def test_an_experiment_with_an_active_run_is_refused(signed_in, experiment, user):
    run = run_with_data(experiment, user, status=RunStatus.RUNNING)
    response = signed_in.post(reverse("deletion:experiment", args=[experiment.pk]))
    assert response.status_code == 422
    assert f"{experiment.name} #{run.number} (running) is still active" in \
        response.content.decode()
    assert Run.objects.filter(pk=run.pk).exists()


def test_an_experiment_whose_checkpoint_another_experiments_run_loads_is_refused(
        experiment, project, user):
    run = run_with_data(experiment, user)
    other = experiment_create(project=project, author=user, name="from-checkpoint",
                              description="", config=experiment.config)
    loading = services.run_launch(experiment=other, user=user)
    Run.objects.filter(pk=loading.pk).update(
        config={**loading.config, "model": f"checkpoint:{checkpoint_of(run).pk}"})
    with pytest.raises(ValidationError, match="from-checkpoint #1 \\(queued\\) loads a "
                                              "checkpoint"):
        experiment_delete(experiment=experiment, user=user)


def test_the_experiment_page_offers_deletion_to_admins(client, experiment, user, member_of):
    url = reverse("experiments:detail", args=[experiment.pk])
    client.force_login(user)
    assert 'id="delete-experiment"' in client.get(url).content.decode()
    client.force_login(member_of("member"))
    assert 'id="delete-experiment"' not in client.get(url).content.decode()


def test_a_tracked_experiment_goes_even_while_a_script_still_logs_to_it(
        signed_in, project, user):
    tracked = tracking.tracked_experiment_get_or_create(project=project, user=user, name="script")
    run = tracking.tracked_run_create(experiment=tracked, user=user)
    page = signed_in.get(reverse("experiments:detail", args=[tracked.pk])).content.decode()
    assert 'id="delete-experiment"' in page
    # Its script runs elsewhere: no process here writes into it (its next write gets a 404).
    assert signed_in.post(reverse("deletion:experiment", args=[tracked.pk])).status_code == 302
    assert not Run.objects.filter(pk=run.pk).exists()
