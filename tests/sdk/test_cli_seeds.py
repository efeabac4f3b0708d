"""`rlab launch --seeds` against the real ASGI server on the test database: one run per seed,
all or none."""

from __future__ import annotations

import pytest

from tests.sdk.test_cli import SETTINGS, write
from webapp.experiments.models import Experiment
from webapp.runs.models import Run

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_launch_with_seeds_queues_one_run_per_seed(rlab, server, project, tmp_path):
    file = write(tmp_path / "exp.yaml", {"name": "seeded", "config": SETTINGS})

    status, out, err = rlab("launch", file, "--project", project.pk, "--seeds", "3,1,7-8")

    assert status == 0, err
    runs = Run.objects.filter(experiment=Experiment.objects.get(name="seeded")).order_by("number")
    assert [run.config["seed"] for run in runs] == [3, 1, 7, 8]
    assert out.splitlines() == [f"Launched seeded #{run.number} (run {run.pk}, seed "
                                f"{run.config['seed']}): {server}/runs/{run.pk}/"
                                for run in runs]


def test_seeds_given_twice_launch_nothing(rlab, project, tmp_path):
    file = write(tmp_path / "exp.yaml", {"name": "twice", "config": SETTINGS})

    status, out, err = rlab("launch", file, "--project", project.pk, "--seeds", "1,2,1")

    assert status == 1 and out == ""
    assert "Each seed once: 1 given twice." in err
    assert not Run.objects.exists()


def test_seeds_that_are_not_numbers_are_a_usage_error(rlab, project, tmp_path):
    file = write(tmp_path / "exp.yaml", {"name": "bad", "config": SETTINGS})

    status, out, err = rlab("launch", file, "--project", project.pk, "--seeds", "one,two")

    assert status == 2 and "'one,two' is not a list of seeds: write 1,2,3 or 0-4" in err
    assert not Experiment.objects.filter(name="bad").exists()


def test_seeds_do_not_follow(rlab, project, tmp_path):
    file = write(tmp_path / "exp.yaml", {"name": "follow", "config": SETTINGS})

    status, out, err = rlab("launch", file, "--project", project.pk, "--seeds", "1,2", "-f")

    assert status == 2 and "--seeds" in err
    assert not Run.objects.exists()
