"""The steps of the backup tests' scenario, each run as a process of its own against the
installation that its environment names (DATABASE_URL, RLAB_RUN_DIR, RLAB_DATASET_DIR,
RLAB_ARTIFACT_DIR), as an administrator's commands run:

    python -m tests.webapp.backup_scenario populate   # teams, projects, runs, files, a dataset,
                                                      # a tracked run with artifacts
    python -m tests.webapp.backup_scenario change     # delete, edit and add some of it
    python -m tests.webapp.backup_scenario snapshot   # every row and file, as JSON on stdout
    python -m tests.webapp.backup_scenario add-run    # one more run: the ids go on from there
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.config.settings.test")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from tests.webapp.lifecycle import dataset_with_files, files_under, run_with_data  # noqa: E402
from webapp.artifacts.services import artifact_upload, logged_model_create  # noqa: E402
from training.spec.config import RunConfig  # noqa: E402
from webapp.deletion.services import project_delete, run_delete  # noqa: E402
from webapp.experiments.models import Experiment  # noqa: E402
from webapp.experiments.services import experiment_create  # noqa: E402
from webapp.projects.models import Project  # noqa: E402
from webapp.projects.services import project_create  # noqa: E402
from webapp.reviews.services import run_notes_set  # noqa: E402
from webapp.runs.models import Run  # noqa: E402
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create  # noqa: E402
from webapp.teams.services import team_create  # noqa: E402


def populate() -> None:
    admin = get_user_model().objects.create_user("ada", password="lovelace-1843")
    team = team_create(name="Reasoning", user=admin)
    for name in ("Arithmetic", "Scratch"):
        project = project_create(team=team, name=name, description="", user=admin)
        experiment = experiment_create(
            project=project, author=admin, name="grpo", description="",
            config=RunConfig(max_steps=3, prompts_per_step=2, group_size=2).to_dict())
        for _ in range(2):
            run_with_data(experiment, admin)
        dataset_with_files(project, admin, name=f"{name} sums",
                           rows=f'{{"prompt": "{name}?", "answer": 1}}\n'.encode())
        tracked_with_artifacts(project, admin)


def tracked_with_artifacts(project, admin) -> None:
    """A tracked run with two artifacts, and a model it logged with one."""
    experiment = tracked_experiment_get_or_create(project=project, user=admin, name="script")
    run = tracked_run_create(experiment=experiment, user=admin)
    for path in ("config.json", "samples/table.json"):
        artifact_upload(owner=run, path=path, stream=io.BytesIO(f"{project.name} {path}".encode()))
    model = logged_model_create(experiment=experiment, name="m", source_run=run, model_type="",
                                params={}, tags={})
    artifact_upload(owner=model, path="MLmodel", stream=io.BytesIO(b"flavors: {}"))


def change() -> None:
    admin = get_user_model().objects.get(username="ada")
    first, second = Run.objects.filter(experiment__project__name="Arithmetic",
                                       experiment__name="grpo").order_by("pk")
    run_delete(run=first, user=admin)
    run_notes_set(run=second, actor=admin, notes="changed after the backup")
    project_delete(project=Project.objects.get(name="Scratch"), user=admin)
    run_with_data(Experiment.objects.get(project__name="Arithmetic", name="grpo"), admin)
    (settings.RLAB_RUN_DIR / "stray.txt").write_text("written after the backup")
    tracked = Run.objects.get(experiment__project__name="Arithmetic", experiment__name="script")
    artifact_upload(owner=tracked, path="config.json", stream=io.BytesIO(b"changed"))


def snapshot() -> None:
    rows = io.StringIO()
    call_command("dumpdata", stdout=rows)
    files = {name: {path: hashlib.sha256(data).hexdigest()
                    for path, data in files_under(root).items()}
             for name, root in (("runs", settings.RLAB_RUN_DIR),
                                ("datasets", settings.RLAB_DATASET_DIR),
                                ("artifacts", settings.RLAB_ARTIFACT_DIR))}
    json.dump({"rows": json.loads(rows.getvalue()), "files": files}, sys.stdout)


def add_run() -> None:
    run_with_data(Experiment.objects.get(project__name="Arithmetic", name="grpo"),
                  get_user_model().objects.get(username="ada"))


if __name__ == "__main__":
    {"populate": populate, "change": change, "snapshot": snapshot, "add-run": add_run}[
        sys.argv[1]]()
