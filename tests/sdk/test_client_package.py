"""rlab-client on its own: a wheel built from client/ holds the SDK and CLI and nothing of the
server, and installed in a clean virtual environment (no system packages, no Django, no torch)
it logs metrics and rollouts to the real ASGI server and lists the run with `rlab runs`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.stack import ROOT, start_web
from webapp.api.tokens import token_create
from webapp.runs.models import MetricPoint, Rollout, Run, RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def run(*command, **options) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **options)
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """client/ built, from a copy so the checkout gets no build folders."""
    work = tmp_path_factory.mktemp("client-build")
    source = shutil.copytree(ROOT / "client", work / "client", ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w",
        str(work / "dist"))
    [built] = (work / "dist").glob("rlab_client-*.whl")
    return built


def test_the_wheel_holds_the_sdk_and_cli_only(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("dist-info/METADATA")))
        entry_points = archive.read(next(n for n in names
                                         if n.endswith("dist-info/entry_points.txt")))
    packages = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert packages == {"rlab"}
    requires = [line.split(":", 1)[1].strip() for line in metadata.decode().splitlines()
                if line.startswith("Requires-Dist:")]
    assert sorted(r.split(">")[0].split("=")[0].lower() for r in requires) == ["pyyaml",
                                                                             "requests"]
    assert b"rlab.mlflow_plugin:ScriptExceptionHeader" in entry_points


SCRIPT = """
import sys
import rlab

project, url, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with rlab.init(project=project, experiment="clean-venv", name="from a clean venv",
               config={"lr": 1e-6}, url=url, token=token, spool_dir=sys.argv[4]) as run:
    for step in range(5):
        run.log({"loss": 1 / (step + 1)}, step=step)
        run.log_rollouts([{"prompt": f"{step} + 1", "completion": str(step + 1),
                           "reward": 1.0, "sample_index": i} for i in range(2)], step=step)
print(run.id)
"""


def test_installed_in_a_clean_venv_it_logs_to_the_server(wheel, tmp_path, user, project):
    env_dir = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(env_dir))
    python, rlab_command = env_dir / "bin" / "python", env_dir / "bin" / "rlab"
    run(str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel))
    clean = {key: value for key, value in os.environ.items()
             if key not in ("PYTHONPATH", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")}
    for server_only in ("django", "torch", "celery", "psycopg", "transformers"):
        found = subprocess.run([str(python), "-c", f"import {server_only}"], env=clean,
                               capture_output=True, cwd=tmp_path)
        assert found.returncode != 0, f"{server_only} is importable in the clean venv"

    server, url = start_web(tmp_path)
    try:
        token = token_create(user=user, name="clean venv")[1]
        logged = run(str(python), "-c", textwrap.dedent(SCRIPT), str(project.pk), url, token,
                     str(tmp_path / "spool"), env=clean, cwd=tmp_path)
        listed = run(str(rlab_command), "runs", "--project", str(project.pk), cwd=tmp_path,
                     env={**clean, "RLAB_URL": url, "RLAB_TOKEN": token})
    finally:
        server.stop()

    tracked = Run.objects.get(pk=int(logged.stdout.split()[-1]))
    assert (tracked.status, tracked.config) == (RunStatus.SUCCEEDED, {"lr": "1e-06"})
    assert sorted(MetricPoint.objects.filter(run=tracked).values_list("step", "value")) == [
        (step, 1 / (step + 1)) for step in range(5)]
    assert Rollout.objects.filter(run=tracked).count() == 10
    assert f"{tracked.pk}" in listed.stdout and "succeeded" in listed.stdout
