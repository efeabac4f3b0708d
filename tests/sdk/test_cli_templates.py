"""`rlab templates` and `rlab launch-template` against the real ASGI server on the test
database: the listing shows each template's parameters, a launch queues a script run with the
values given, and a value out of bounds is refused, named, with nothing created."""

from __future__ import annotations

import pytest

from webapp.jobs.services import job_template_create
from webapp.runs.models import Run, RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def template(team, user):
    return job_template_create(team=team, user=user, fields={
        "name": "echo", "command": "echo --lr {lr} --procs {procs} --tag {tag}",
        "devices": "{procs}",
        "parameters": [{"name": "lr", "type": "float", "default": 1e-5, "min": 0, "max": 1},
                       {"name": "procs", "type": "int", "default": 1, "min": 1, "max": 4},
                       {"name": "tag", "type": "str", "default": "base"}]})


def test_templates_lists_each_template_with_its_parameters(rlab, template, team):
    status, out, _ = rlab("templates", "--team", team.pk)
    assert status == 0
    assert out == (f"{template.pk}\techo\tqueue cpu\tlr:float=1e-05 [0.0..1.0], "
                   "procs:int=1 [1..4], tag:str=base\n")


def test_launch_template_queues_a_run_with_the_values(rlab, template, project):
    status, out, err = rlab("launch-template", template.pk, "--project", project.pk,
                            "--param", "lr=0.5", "--param", "procs=2",
                            "--param", "tag=a b; rm -rf /")
    assert status == 0, err
    run = Run.objects.get()
    assert f"(run {run.pk})" in out
    assert run.status == RunStatus.QUEUED and run.devices == 2
    assert run.config["script"]["argv"] == ["echo", "--lr", "0.5", "--procs", "2", "--tag",
                                            "a b; rm -rf /"]


def test_a_value_out_of_bounds_is_refused_and_named(rlab, template, project):
    status, _, err = rlab("launch-template", template.pk, "--project", project.pk,
                          "--param", "procs=9")
    assert status == 1
    assert "values.procs: 9 is above the maximum, 4." in err
    assert not Run.objects.exists()
