import pytest

TEMPLATE_FIELDS = {
    "name": "TRL GRPO",
    "command": "accelerate launch --num_processes {procs} train.py --lr {lr} "
               "--output_dir {output_dir}",
    "parameters": [
        {"name": "lr", "type": "float", "default": 1e-5, "min": 0, "max": 0.1},
        {"name": "procs", "type": "int", "default": 1, "min": 1, "max": 4},
    ],
    "environment": {"RUN_TAG": "run-{run_id}"},
    "devices": "{procs}",
    "rollouts_format": "trl",
    "rollouts_path": "completions",
    "checkpoints_path": ".",
    "resume_arguments": "--resume_from_checkpoint {checkpoint}",
}


@pytest.fixture
def template_fields():
    return {**TEMPLATE_FIELDS, "parameters": [dict(p) for p in TEMPLATE_FIELDS["parameters"]]}


@pytest.fixture
def template(team, user, template_fields):
    """A template of the team, made by its admin `user` (team_create makes the creator admin)."""
    from webapp.jobs.services import job_template_create

    return job_template_create(team=team, user=user, fields=template_fields)
