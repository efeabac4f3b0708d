"""Back up the database and the files (runs' folders, dataset files, artifacts) into one archive:

    manage.py backup /backups/rlab-2026-05-01.tar

webapp.projects.backup says what the archive holds; `manage.py restore` puts it back."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser
from django.template.defaultfilters import filesizeformat

from webapp.projects.backup import backup_create, files_summary


class Command(BaseCommand):
    help = ("Back up the database and the files (RLAB_RUN_DIR, RLAB_DATASET_DIR, and "
            "RLAB_ARTIFACT_DIR unless artifacts go to a bucket) into one new "
            "archive: .tar, or .tar.gz to compress it.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path, help="The archive to write; it must not exist.")

    def handle(self, *args, archive: Path, verbosity: int, **options) -> None:
        def log(message: str) -> None:
            if verbosity:
                self.stdout.write(message)

        manifest = backup_create(archive=archive, log=log)
        self.stdout.write(self.style.SUCCESS(
            f"Backed up the {manifest['database']['engine']} database and "
            f"{files_summary(manifest)} to {archive.absolute()} "
            f"({filesizeformat(archive.stat().st_size)})."))
