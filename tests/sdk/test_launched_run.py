"""A process that rlab launched as a script run (RLAB_RUN_ID, RLAB_URL and the run's own
RLAB_TOKEN in its environment) logs through rlab.init into that run, whatever the script names,
and leaves the run's end to its worker."""

from __future__ import annotations

import pytest

import rlab
from tests.stack import start_web
from tests.webapp.api.test_run_tokens import script_run
from webapp.api.run_tokens import run_token_create
from webapp.experiments.models import Experiment
from webapp.runs.models import MetricPoint, RunStatus


@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory):
    server, base_url = start_web(tmp_path_factory.mktemp("web"))
    yield base_url
    server.stop()


def test_the_sdk_launched_as_a_run_logs_into_it_and_leaves_its_end_to_the_worker(
        web, transactional_db, project, user, tmp_path, monkeypatch):
    run = script_run(project, user)
    monkeypatch.setenv("RLAB_RUN_ID", str(run.pk))
    monkeypatch.setenv("RLAB_URL", web)
    monkeypatch.setenv("RLAB_TOKEN", run_token_create(run=run))
    logged = rlab.init(project=project.pk, experiment="named in the script", config={"lr": 0.1},
                       spool_dir=tmp_path / "spool", flush_interval=0.1)
    assert logged.id == run.pk
    logged.log({"reward/mean": 0.25}, step=3)
    logged.log_rollouts([{"prompt": "1 + 1 =", "completion": " 2", "reward": 1.0}], step=3)
    assert logged.finish(timeout=60)

    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert run.config["lr"] == "0.1"
    assert MetricPoint.objects.get(run=run, key="reward/mean").step == 3
    assert run.rollouts.get().completion == " 2"
    assert Experiment.objects.filter(name="named in the script").count() == 0


def test_the_sdk_refuses_a_run_id_that_is_not_one(monkeypatch):
    monkeypatch.setenv("RLAB_RUN_ID", "12; rm -rf")
    with pytest.raises(rlab.RlabError, match="RLAB_RUN_ID"):
        rlab.init(project=1, experiment="x", url="http://127.0.0.1:9", token="rlab_0_x")


def test_each_process_of_a_launch_spools_apart(monkeypatch, tmp_path):
    """Under torchrun or accelerate every rank may call rlab.init: the ranks log into the one
    run, and no two write the same spool (their batch numbers would collide)."""
    monkeypatch.setenv("RLAB_RUN_ID", "7")
    folders = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        run = rlab.init(url="http://127.0.0.1:9", token="rlab_0_x", spool_dir=tmp_path)
        folders.append(run.spool_dir)
        run.finish(timeout=0)
    assert folders == [tmp_path / "7", tmp_path / "rank-1" / "7"]
