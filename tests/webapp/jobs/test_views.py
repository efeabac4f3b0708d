"""The template pages: admins write templates, members launch them from a generated form,
outsiders get 404, and a script run's page shows its command."""

import json

import pytest
from django.urls import reverse

from webapp.jobs.models import JobTemplate
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


def test_an_outsider_gets_404_on_every_template_page(client, other_user, template, team):
    client.force_login(other_user)
    for url in (reverse("jobs:list", args=[team.pk]), reverse("jobs:detail", args=[template.pk]),
                reverse("jobs:launch", args=[template.pk]),
                reverse("jobs:edit", args=[template.pk])):
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("jobs:delete", args=[template.pk])).status_code == 404


def test_a_viewer_sees_templates_but_cannot_launch(client, member_of, template, team):
    client.force_login(member_of("viewer"))
    page = client.get(reverse("jobs:list", args=[team.pk]))
    assert template.name in page.content.decode()
    assert client.get(reverse("jobs:launch", args=[template.pk])).status_code == 403


def test_a_member_cannot_edit_create_or_delete(client, member_of, template, team):
    client.force_login(member_of("member"))
    assert client.get(reverse("jobs:edit", args=[template.pk])).status_code == 403
    assert client.get(reverse("jobs:create", args=[team.pk])).status_code == 403
    assert client.post(reverse("jobs:delete", args=[template.pk])).status_code == 403
    assert client.post(reverse("jobs:examples", args=[team.pk])).status_code == 403
    assert JobTemplate.objects.filter(pk=template.pk).exists()


def _form(**changes):
    data = {"name": "echo", "command": "echo --n {n} --word {word}",
            "parameters": json.dumps([{"name": "n", "type": "int", "default": 1, "min": 1,
                                       "max": 5},
                                      {"name": "word", "type": "str", "default": "hi"}]),
            "environment": "", "queue": "cpu", "devices": "1", "rollouts_format": "",
            "working_dir": "", "rollouts_path": "", "checkpoints_path": "",
            "resume_arguments": "", "description": ""}
    data.update(changes)
    return data


def test_an_admin_creates_a_template_from_the_form(signed_in, team):
    response = signed_in.post(reverse("jobs:create", args=[team.pk]), _form())
    template = JobTemplate.objects.get(name="echo")
    assert response.status_code == 302
    assert [p["name"] for p in template.parameters] == ["n", "word"]


def test_template_form_errors_are_shown_and_what_was_typed_kept(signed_in, team):
    response = signed_in.post(reverse("jobs:create", args=[team.pk]),
                              _form(command="echo {missing}", parameters="[{oops"))
    body = response.content.decode()
    assert response.status_code == 422
    assert "Not JSON" in body
    assert "echo {missing}" in body
    assert not JobTemplate.objects.exists()


def test_launch_errors_are_shown_beside_the_field_with_values_kept(client, member_of, template,
                                                                   project):
    client.force_login(member_of("member"))
    response = client.post(reverse("jobs:launch", args=[template.pk]),
                           {"project": project.pk, "priority": "0", "p-lr": "0.5",
                            "p-procs": "3"})
    body = response.content.decode()
    assert response.status_code == 422
    assert "above the maximum" in body
    assert 'value="0.5"' in body and 'value="3"' in body
    assert not Run.objects.exists()


def test_a_launch_goes_to_the_run_page_which_shows_the_command(client, member_of, template,
                                                               project):
    client.force_login(member_of("member"))
    response = client.post(reverse("jobs:launch", args=[template.pk]),
                           {"project": project.pk, "priority": "0", "p-lr": "0.001",
                            "p-procs": "2"})
    run = Run.objects.get()
    assert response.status_code == 302 and response.url == run.get_absolute_url()
    page = client.get(run.get_absolute_url()).content.decode()
    assert "accelerate launch --num_processes 2 train.py --lr 0.001" in page
    assert reverse("jobs:detail", args=[template.pk]) in page


def test_a_launch_into_another_teams_project_is_refused(client, member_of, template,
                                                       other_user):
    from webapp.projects.services import project_create
    from webapp.teams.services import team_create

    other = project_create(team=team_create(name="Other", user=other_user), name="Theirs",
                           description="", user=other_user)
    client.force_login(member_of("member"))
    response = client.post(reverse("jobs:launch", args=[template.pk]),
                           {"project": other.pk, "priority": "0"})
    assert response.status_code == 422
    assert not Run.objects.exists()


def test_the_team_and_project_pages_link_the_templates(signed_in, team, project):
    assert reverse("jobs:list", args=[team.pk]) in signed_in.get(
        reverse("teams:detail", args=[team.pk])).content.decode()
    assert f'{reverse("jobs:list", args=[team.pk])}?project={project.pk}' in signed_in.get(
        project.get_absolute_url()).content.decode()


def test_an_admin_adds_the_examples_with_one_button(signed_in, team):
    signed_in.post(reverse("jobs:examples", args=[team.pk]))
    page = signed_in.get(reverse("jobs:list", args=[team.pk])).content.decode()
    assert "TRL GRPO (accelerate)" in page and "veRL PPO/GRPO (Ray)" in page


def test_the_template_page_shows_its_command_and_parameters(signed_in, template):
    page = signed_in.get(reverse("jobs:detail", args=[template.pk])).content.decode()
    assert "--num_processes" in page and "procs" in page


def test_the_script_experiment_and_project_pages_show_its_runs(signed_in, template, project,
                                                               user):
    from webapp.jobs.services import script_run_launch

    run = script_run_launch(template=template, project=project, user=user, values={})
    assert signed_in.get(run.experiment.get_absolute_url()).status_code == 200
    assert signed_in.get(project.get_absolute_url()).status_code == 200
    assert signed_in.get(reverse("runs_table:table", args=[project.pk])).status_code == 200
    assert signed_in.get(reverse("runs:compare", args=[project.pk]),
                         {"runs": [run.pk]}).status_code == 200


def test_the_run_pages_resume_button_resumes_a_script_run(signed_in, template, project, user,
                                                          tmp_path):
    from webapp.jobs.services import script_run_launch
    from webapp.runs.models import Checkpoint, RunStatus

    run = script_run_launch(template=template, project=project, user=user, values={})
    (tmp_path / "checkpoint-5").mkdir()
    Checkpoint.objects.create(run=run, step=5, path=str(tmp_path / "checkpoint-5"))
    Run.objects.filter(pk=run.pk).update(status=RunStatus.INTERRUPTED)
    assert 'id="resume"' in signed_in.get(run.get_absolute_url()).content.decode()
    response = signed_in.post(reverse("runs:resume", args=[run.pk]))
    resumed = Run.objects.get(resumed_from__run=run)
    assert response.url == resumed.get_absolute_url()
    assert resumed.config["script"]["argv"][-2:] == ["--resume_from_checkpoint",
                                                     str(tmp_path / "checkpoint-5")]
