"""`rlab sweep sweep.yaml --project N` against the real ASGI server on the test database: the
YAML the docs show creates the sweep and launches its runs; a bad one is refused, each problem
named, with nothing created."""

from __future__ import annotations

import pytest
import yaml

from training.spec.config import RunConfig
from webapp.experiments.services import experiment_create
from webapp.runs.models import Run, RunStatus
from webapp.sweeps.models import Sweep

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SWEEP = """\
experiment: "grpo-base"
name: "lr sweep"
method: tpe
objective: {metric: eval/accuracy, direction: maximize}
pruner: median
budget: 12
max_concurrent: 2
axes:
  learning_rate: {log_uniform: [1e-7, 1e-5]}
  beta: {values: [0.0, 0.04]}
  epsilon: {uniform: [0.1, 0.3]}
"""


@pytest.fixture
def base(project, user):
    return experiment_create(project=project, author=user, name="grpo-base", description="",
                             config=RunConfig(max_steps=3).to_dict())


def test_sweep_creates_the_sweep_from_yaml_and_launches_its_first_trials(rlab, server, project,
                                                                        base, tmp_path):
    file = tmp_path / "sweep.yaml"
    file.write_text(SWEEP)

    status, out, err = rlab("sweep", file, "--project", project.pk)

    assert status == 0, err
    sweep = Sweep.objects.get(project=project)
    assert (sweep.name, sweep.method, sweep.budget, sweep.pruner) == ("lr sweep", "tpe", 12, True)
    runs = list(Run.objects.filter(sweep=sweep))
    assert len(runs) == 2 and all(run.status == RunStatus.QUEUED for run in runs)
    assert all(1e-7 <= run.config["learning_rate"] <= 1e-5 for run in runs)
    assert out == (f"Sweep 'lr sweep' (sweep {sweep.pk}): 2 runs launched of 12: "
                   f"{server}/sweeps/{sweep.pk}/\n")


def test_a_bad_sweep_is_refused_naming_each_problem(rlab, project, base, tmp_path):
    data = yaml.safe_load(SWEEP)
    data["budget"] = 100_000
    data["axes"]["beta"] = {"values": []}
    file = tmp_path / "sweep.yaml"
    file.write_text(yaml.safe_dump(data))

    status, out, err = rlab("sweep", file, "--project", project.pk)

    assert status == 1 and out == ""
    assert "budget: at most 1000 runs (RLAB_SWEEP_MAX_RUNS)" in err
    assert "axes.beta: values: the list is empty; give at least one value" in err
    assert not Sweep.objects.exists() and not Run.objects.exists()


def test_a_file_that_is_not_yaml_is_a_usage_error(rlab, project, tmp_path):
    file = tmp_path / "sweep.yaml"
    file.write_text("axes: [unclosed")
    status, _, err = rlab("sweep", file, "--project", project.pk)
    assert status == 2 and "is not YAML" in err
