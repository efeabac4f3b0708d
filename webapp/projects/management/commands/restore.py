"""Restore an archive that `manage.py backup` wrote, replacing the database and the files:

    manage.py restore /backups/rlab-2026-05-01.tar

Stop the web server and the workers first. It asks for confirmation unless given --yes; an
archive from a newer schema is refused, and a restore that fails half-way puts back what it
changed (webapp.projects.backup)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.projects.backup import archive_manifest, backup_restore, restore_summary


class Command(BaseCommand):
    help = ("Replace the database and the files (RLAB_RUN_DIR, RLAB_DATASET_DIR) with those of "
            "an archive that `manage.py backup` wrote. Stop the web server and workers first.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path, help="The archive to restore.")
        parser.add_argument("--yes", action="store_true",
                            help="Restore without asking for confirmation.")

    def handle(self, *args, archive: Path, yes: bool, verbosity: int, **options) -> None:
        def log(message: str) -> None:
            if verbosity:
                self.stdout.write(message)

        if not archive.is_file():
            raise CommandError(f"{archive} is not a file: give the path of a backup archive.")
        manifest = archive_manifest(archive)
        self.stdout.write(restore_summary(archive, manifest))
        if not yes:
            try:
                answer = input("Type 'yes' to restore: ")
            except EOFError:
                answer = ""
            if answer.strip().lower() != "yes":
                raise CommandError("Nothing was restored.")
        backup_restore(archive=archive, manifest=manifest, log=log)
        self.stdout.write(self.style.SUCCESS(
            f"Restored {archive} (made {manifest['created_at']} by rlab "
            f"{manifest['rlab_version']})."))
