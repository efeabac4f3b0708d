import pytest

from webapp.runs import services
from webapp.runs.seed_groups import seed_group_of
from webapp.runs.tracking import (
    tracked_experiment_get_or_create,
    tracked_run_create,
    tracked_run_log_params,
)

pytestmark = pytest.mark.django_db


def test_configs_that_differ_only_by_seed_share_a_group():
    assert seed_group_of({"lr": 1e-6, "seed": 1}) == seed_group_of({"seed": 2, "lr": 1e-6})


def test_configs_that_differ_in_a_setting_do_not():
    assert seed_group_of({"lr": 1e-6, "seed": 1}) != seed_group_of({"lr": 2e-6, "seed": 1})


def test_a_resumed_run_stays_in_the_group_of_the_run_it_continues():
    assert seed_group_of({"lr": 1.0, "resume_from": "checkpoint:4"}) == seed_group_of({"lr": 1.0})


def test_a_config_of_only_a_seed_has_no_group():
    assert seed_group_of({"seed": 3}) == ""


def test_runs_launched_over_seeds_share_a_group_and_keep_their_seeds(experiment, user):
    runs = services.runs_launch_seeds(experiment=experiment, user=user, seeds=[3, 1, 2])
    assert [run.config["seed"] for run in runs] == [3, 1, 2]
    assert len({run.seed_group for run in runs}) == 1
    experiment.config["learning_rate"] = experiment.config["learning_rate"] * 2
    experiment.save()
    other = services.run_launch(experiment=experiment, user=user)
    assert other.seed_group and other.seed_group != runs[0].seed_group


def test_a_tracked_runs_group_follows_the_parameters_its_script_logs(project, user):
    experiment = tracked_experiment_get_or_create(project=project, user=user, name="scripts")
    run = tracked_run_create(experiment=experiment, user=user)
    assert run.seed_group == ""
    tracked_run_log_params(run_id=run.pk, params={"lr": "1e-6", "seed": "7"})
    run.refresh_from_db()
    assert run.seed_group == seed_group_of({"lr": "1e-6"})
