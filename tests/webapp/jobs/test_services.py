"""Templates are written by team admins; members launch them into queued script runs whose
config keeps the command as rendered then; a run is resumed from its newest checkpoint."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from webapp.experiments.models import ExperimentKind
from webapp.jobs.parameters import SpecError
from webapp.jobs.script_spec import script_spec_of
from webapp.jobs.services import (
    job_template_create,
    job_template_delete,
    job_template_update,
    script_run_launch,
)
from webapp.runs.files import run_folder
from webapp.runs.models import Checkpoint, RunStatus
from webapp.runs.services import run_resume

pytestmark = pytest.mark.django_db


def test_a_member_cannot_create_or_edit_a_template(team, member_of, template,
                                                   template_fields):
    member = member_of("member")
    with pytest.raises(PermissionDenied):
        job_template_create(team=team, user=member, fields={**template_fields, "name": "x"})
    with pytest.raises(PermissionDenied):
        job_template_update(template=template, user=member, fields=template_fields)
    with pytest.raises(PermissionDenied):
        job_template_delete(template=template, user=member)


def test_a_template_name_is_unique_in_its_team(team, user, template, template_fields):
    with pytest.raises(SpecError) as caught:
        job_template_create(team=team, user=user, fields=template_fields)
    assert "already" in caught.value.errors["name"]


def test_launch_queues_a_script_run_with_the_rendered_command(project, member_of, template):
    member = member_of("member")
    run = script_run_launch(template=template, project=project, user=member,
                            values={"lr": "0.001", "procs": 2}, priority=5)
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert (run.queue, run.devices, run.priority, run.job_template) == ("cpu", 2, 5, template)
    assert run.experiment.kind == ExperimentKind.SCRIPT
    assert run.experiment.name == "TRL GRPO"
    spec = script_spec_of(run.config)
    assert spec.argv == ["accelerate", "launch", "--num_processes", "2", "train.py", "--lr",
                         "0.001", "--output_dir", str(run_folder(run.pk, run.created_at))]
    assert spec.environment == {"RUN_TAG": f"run-{run.pk}"}
    assert spec.parameters == {"lr": 0.001, "procs": 2}
    assert (spec.rollouts_format, spec.rollouts_path, spec.checkpoints_path) == (
        "trl", "completions", ".")


def test_an_edit_of_the_template_leaves_launched_runs_as_they_were(project, user, template,
                                                                   template_fields):
    run = script_run_launch(template=template, project=project, user=user, values={})
    job_template_update(template=template, user=user,
                        fields={**template_fields, "command": "other {lr} {procs}"})
    run.refresh_from_db()
    assert script_spec_of(run.config).argv[0] == "accelerate"


def test_launch_refuses_values_out_of_bounds_and_creates_nothing(project, user, template):
    with pytest.raises(SpecError) as caught:
        script_run_launch(template=template, project=project, user=user,
                          values={"lr": "5", "procs": "9"})
    assert set(caught.value.errors) == {"lr", "procs"}
    assert not project.experiments.exists()


def test_a_viewer_cannot_launch(project, member_of, template):
    with pytest.raises(PermissionDenied):
        script_run_launch(template=template, project=project, user=member_of("viewer"),
                          values={})


def test_a_template_launches_only_into_its_own_teams_projects(template, other_user):
    from webapp.projects.services import project_create
    from webapp.teams.services import team_create

    other = project_create(team=team_create(name="Other", user=other_user), name="P",
                           description="", user=other_user)
    with pytest.raises((ValidationError, PermissionDenied)):
        script_run_launch(template=template, project=other, user=other_user, values={})


def test_an_experiment_name_taken_by_a_training_experiment_is_an_error(project, user, template,
                                                                       experiment):
    with pytest.raises(SpecError) as caught:
        script_run_launch(template=template, project=project, user=user, values={},
                          experiment_name=experiment.name)
    assert "experiment_name" in caught.value.errors


def test_two_launches_share_the_script_experiment(project, user, template):
    first = script_run_launch(template=template, project=project, user=user, values={})
    second = script_run_launch(template=template, project=project, user=user, values={})
    assert first.experiment_id == second.experiment_id
    assert (first.number, second.number) == (1, 2)


def _failed_with_checkpoint(run, tmp_path, step=10):
    folder = tmp_path / f"checkpoint-{step}"
    folder.mkdir()
    Checkpoint.objects.create(run=run, step=step, path=str(folder))
    run.status = RunStatus.FAILED
    run.save(update_fields=["status"])
    return folder


def test_a_script_run_resumes_from_its_newest_checkpoint(project, user, template, tmp_path):
    run = script_run_launch(template=template, project=project, user=user,
                            values={"procs": 3})
    folder = _failed_with_checkpoint(run, tmp_path)
    resumed = run_resume(run=run, user=user)
    spec = script_spec_of(resumed.config)
    assert resumed.resumed_from.run == run
    assert resumed.devices == 3
    assert spec.argv[-3:] == [str(run_folder(resumed.pk, resumed.created_at)),
                              "--resume_from_checkpoint", str(folder)]
    assert spec.environment == {"RUN_TAG": f"run-{resumed.pk}"}


def test_a_template_without_resume_arguments_says_so(project, user, template, template_fields,
                                                     tmp_path):
    job_template_update(template=template, user=user,
                        fields={**template_fields, "resume_arguments": ""})
    run = script_run_launch(template=template, project=project, user=user, values={})
    _failed_with_checkpoint(run, tmp_path)
    with pytest.raises(ValidationError, match="no way to resume"):
        run_resume(run=run, user=user)


def test_a_run_without_a_checkpoint_cannot_resume(project, user, template):
    run = script_run_launch(template=template, project=project, user=user, values={})
    run.status = RunStatus.FAILED
    run.save(update_fields=["status"])
    with pytest.raises(ValidationError, match="no checkpoint"):
        run_resume(run=run, user=user)
