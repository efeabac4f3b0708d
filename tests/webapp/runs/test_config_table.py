"""The run page's config table: what differs from the defaults first, the rest folded."""

import pytest
from django.urls import reverse

from training.spec.config import RunConfig
from webapp.experiments.services import experiment_create
from webapp.runs import services
from webapp.runs.config_table import config_table
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


def test_settings_that_differ_from_the_defaults_come_first(experiment, user):
    table = config_table(services.run_launch(experiment=experiment, user=user))
    changed = {row.name: (row.value, row.default) for row in table.changed}
    assert changed == {"max_steps": (3, 30), "prompts_per_step": (2, 8), "group_size": (2, 8)}
    unchanged = [row.name for row in table.defaults]
    assert "learning_rate" in unchanged and "scale_rewards" in unchanged  # GRPO's own too
    assert unchanged.index("model") < unchanged.index("learning_rate")  # section by section


def test_a_ppo_run_shows_its_own_settings_and_no_other_algorithms(project, user):
    config = RunConfig.from_dict({"algorithm": "ppo", "gae_lambda": 0.9}).to_dict()
    # stored as before algorithms owned their settings: another algorithm's keys beside
    experiment = experiment_create(project=project, author=user, name="ppo", description="",
                                   config=config)
    run = services.run_launch(experiment=experiment, user=user)
    Run.objects.filter(pk=run.pk).update(config={**run.config, "spo_half_life": 0.5})
    table = config_table(Run.objects.get(pk=run.pk))
    assert {row.name for row in table.changed} == {"algorithm", "gae_lambda"}
    names = {row.name for row in table.changed + table.defaults}
    assert "value_coef" in names and not {"spo_half_life", "scale_rewards"} & names


def test_the_page_folds_the_settings_at_their_defaults(signed_in, experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    body = signed_in.get(reverse("runs:detail", args=[run.pk])).content.decode()
    changed = body.index('id="config-changed"')
    folded = body.index('<details id="config-defaults">')
    assert changed < body.index(">max_steps<") < folded < body.index(">learning_rate<")
