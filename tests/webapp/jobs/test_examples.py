"""The shipped example templates check as templates do, and an admin adds them once."""

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command

from webapp.jobs.examples import RECIPES_DIR, example_templates_add
from webapp.jobs.services import script_run_launch

pytestmark = pytest.mark.django_db


def test_an_admin_adds_every_example_once(team, user):
    added = example_templates_add(team=team, user=user)
    assert sorted(t.name for t in added) == ["OpenRLHF PPO (Ray)", "TRL GRPO (accelerate)",
                                             "veRL PPO/GRPO (Ray)"]
    assert example_templates_add(team=team, user=user) == []


def test_a_member_cannot_add_the_examples(team, member_of):
    with pytest.raises(PermissionDenied):
        example_templates_add(team=team, user=member_of("member"))


def test_the_trl_example_names_the_shipped_script(team, user):
    trl = next(t for t in example_templates_add(team=team, user=user) if "TRL" in t.name)
    assert f"{RECIPES_DIR}/trl_grpo.py" in trl.command


def test_a_hydra_override_value_cannot_add_an_override(team, user, project):
    verl = next(t for t in example_templates_add(team=team, user=user) if "veRL" in t.name)
    values = {"model": "/models/qwen", "train_files": "/data/train.parquet",
              "val_files": "/data/val.parquet"}
    run = script_run_launch(template=verl, project=project, user=user, values=values)
    argv = run.config["script"]["argv"]
    assert "actor_rollout_ref.model.path=/models/qwen" in argv
    assert f"trainer.experiment_name=run-{run.pk}" in argv
    from webapp.jobs.parameters import SpecError
    for bad in ("/m trainer.total_epochs=9", "${oc.env:SECRET}", "/m,/n", "../etc"):
        with pytest.raises(SpecError):
            script_run_launch(template=verl, project=project, user=user,
                              values={**values, "model": bad})


def test_the_management_command_adds_them(team, user, capsys):
    call_command("job_examples", str(team.pk), "--user", user.username)
    assert "added TRL GRPO (accelerate)" in capsys.readouterr().out
