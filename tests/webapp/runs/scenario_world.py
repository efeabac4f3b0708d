"""The run that the SQLite scenarios (summary_scenario, rollup_scenario) log into: a user, team,
project and experiment of their own on the fresh database. Imported after django.setup()."""

from django.contrib.auth import get_user_model

from training.spec.config import RunConfig
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs import services
from webapp.runs.models import Run
from webapp.teams.services import team_create


def a_run() -> Run:
    user = get_user_model().objects.create_user(username="ada", password="lovelace-1843")
    team = team_create(name="Reasoning", user=user)
    project = project_create(team=team, name="Arithmetic", description="", user=user)
    config = RunConfig(max_steps=3, prompts_per_step=2, group_size=2).to_dict()
    experiment = experiment_create(project=project, author=user, name="grpo", description="",
                                   config=config)
    return services.run_launch(experiment=experiment, user=user)
