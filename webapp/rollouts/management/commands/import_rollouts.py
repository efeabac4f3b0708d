"""Import the rollouts a TRL or veRL training left on disk into a run (webapp.rollouts.importers
says which files and what is read from them):

    manage.py import_rollouts --format trl --project 3 --experiment trl-grpo \\
        out/completions/*.parquet

makes a tracked run of the project's tracked experiment, stores the rollouts and ends the run;
`--run ID` adds them to an existing run instead. Every file is read through before anything is
written, and again to write, a batch at a time, never whole: a file with a problem imports
nothing, and the problems are listed by file, row or line and column. Each file is held to the
limits of webapp.rollouts.importers.LIMITS. Importing the same files again stores nothing twice."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.http import Http404

from webapp.projects.models import Project
from webapp.projects.selectors import get_project_for_user
from webapp.rollouts.importers import FORMATS, RolloutFileError, scan_files
from webapp.rollouts.services import rollouts_import
from webapp.runs.models import Run, RunStatus
from webapp.runs.services import run_progress
from webapp.runs.tracking import (
    tracked_experiment_get_or_create,
    tracked_run_create,
    tracked_run_finish,
)
from webapp.teams.models import Membership, Role


class Command(BaseCommand):
    help = ("Import TRL completion Parquet files or veRL rollout JSON-lines dumps as the "
            "rollouts of a run: a new tracked run, or the one --run names.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                            help="Files to import; a step's files must come in one import.")
        parser.add_argument("--format", required=True, choices=FORMATS,
                            help="trl: completions_*.parquet (log_completions=True); "
                                 "verl: <step>.jsonl (trainer.rollout_data_dir).")
        parser.add_argument("--project", type=int, help="The project's id (for a new run).")
        parser.add_argument("--experiment", help="The tracked experiment's name (for a new run); "
                                                 "made on first use.")
        parser.add_argument("--name", default="", help="The new run's name.")
        parser.add_argument("--run", type=int, help="Import into this run instead.")
        parser.add_argument("--user", help="Who imports: the new run is theirs. By default, the "
                                           "team's first admin.")
        parser.add_argument("--rewards", default="",
                            help="TRL: the reward functions' columns, comma-separated. By "
                                 "default, every column of floats besides advantage.")

    def handle(self, *args, paths: list[Path], format: str, project: int | None,
               experiment: str | None, name: str, run: int | None, user: str | None,
               rewards: str, **options) -> None:
        if run is None and (project is None or not experiment):
            raise CommandError("Name the run to import into with --run, or the project and "
                               "experiment of a new run with --project and --experiment.")
        if run is not None and (project is not None or experiment):
            raise CommandError("--run imports into an existing run: leave out --project and "
                               "--experiment.")
        for path in paths:
            try:
                path.open("rb").close()
            except OSError as exc:
                raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
        reward_columns = [column.strip() for column in rewards.split(",") if column.strip()]
        try:
            scan = scan_files([(path.name, path) for path in paths], format=format,
                              reward_columns=reward_columns or None)
            # Every file was read through without a problem; they are read again to store
            # their rollouts a batch at a time, all or none.
            with transaction.atomic():
                target = (self._existing_run(run) if run is not None
                          else self._new_run(project, experiment, name, user, paths))
                stored = sum(rollouts_import(run_id=target.pk, steps=batch)
                             for batch in scan.batches())
                if run is None:
                    last = scan.steps[-1]
                    run_progress(run_id=target.pk, step=last, total_steps=last)
                    tracked_run_finish(run_id=target.pk, status=RunStatus.SUCCEEDED)
        except RolloutFileError as exc:
            raise CommandError("Nothing was imported:\n" + "\n".join(exc.messages)) from None

        received = scan.rows
        self.stdout.write(
            f"Imported {received} rollouts of {len(scan.steps)} steps from {len(paths)} files "
            f"into run {target.pk} ({target.experiment.name} #{target.number}): {stored} new, "
            f"{received - stored} already there.")
        if scan.unscored:
            self.stdout.write(f"{scan.unscored} rollouts have no score (NaN or missing): stored "
                              "as unscored.")
        for column, reason in scan.left_out.items():
            self.stdout.write(f"Column {column!r} left out: {reason}")

    def _existing_run(self, run_id: int) -> Run:
        target = Run.objects.select_related("experiment").filter(pk=run_id).first()
        if target is None:
            raise CommandError(f"There is no run {run_id}.")
        return target

    def _new_run(self, project_id: int, experiment: str, name: str, username: str | None,
                 paths: list[Path]) -> Run:
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            raise CommandError(f"There is no project {project_id}.")
        importer = self._importer(project, username)
        try:
            tracked = tracked_experiment_get_or_create(project=project, user=importer,
                                                       name=experiment)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        default = f"imported from {paths[0].name}" + (
            f" and {len(paths) - 1} more" if len(paths) > 1 else "")
        return tracked_run_create(experiment=tracked, user=importer, name=name or default)

    def _importer(self, project: Project, username: str | None):
        if username is None:
            admin = (Membership.objects.filter(team_id=project.team_id, role=Role.ADMIN)
                     .order_by("created_at", "pk").select_related("user").first())
            if admin is None:
                raise CommandError("The project's team has no admin: name who imports with "
                                   "--user.")
            return admin.user
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user {username!r}.")
        try:
            get_project_for_user(user, project.pk, Role.MEMBER)
        except (Http404, PermissionDenied):
            raise CommandError(f"{username} cannot add runs to project {project.pk}: they need "
                               f"the member role in its team.") from None
        return user
