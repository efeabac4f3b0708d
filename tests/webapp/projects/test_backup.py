"""`manage.py backup` and `manage.py restore`, run as an administrator runs them, on a scratch
Postgres database and on SQLite: data and files are made, backed up, changed and deleted, then
restored, and every row and every file's bytes must be as they were at the backup."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from benchmarks.scratch import scratch_database
from tests.stack import ROOT


class Installation:
    """An rlab installation of its own: a database and its run and dataset folders, driven by
    commands in processes of their own."""

    def __init__(self, root: Path, database_url: str):
        self.root = root
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.config.settings.test",
                    "DATABASE_URL": database_url, "RLAB_VAR_DIR": str(root / "var"),
                    "RLAB_RUN_DIR": str(root / "runs"), "RLAB_DATASET_DIR": str(root / "datasets"),
                    "RLAB_ARTIFACT_DIR": str(root / "artifacts"),
                    "CELERY_BROKER_URL": settings.CELERY_BROKER_URL}

    def run(self, *args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, *args], cwd=ROOT, env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited with {done.returncode}:\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def manage(self, *args: str, **options) -> subprocess.CompletedProcess:
        return self.run("manage.py", *args, **options)

    def scenario(self, step: str) -> str:
        return self.run("-m", "tests.webapp.backup_scenario", step).stdout

    def snapshot(self) -> dict:
        return json.loads(self.scenario("snapshot"))


def _admin_url() -> str:
    database = settings.DATABASES["default"]
    return (f"postgres://{database['USER'] or 'postgres'}:{database['PASSWORD'] or ''}@"
            f"{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/postgres")


@pytest.fixture
def new_installation(tmp_path) -> Iterator[Callable[[str, str], Installation]]:
    """new_installation(engine, name) -> a migrated installation on `engine` (postgresql: a
    scratch database named after this session's, dropped afterwards; sqlite: a file)."""
    with_databases = []

    def make(engine: str, name: str) -> Installation:
        root = tmp_path / name
        if engine == "sqlite":
            installation = Installation(root, f"sqlite:///{root / 'rlab.sqlite3'}")
        else:
            database = scratch_database(_admin_url(),
                                        f"{settings.DATABASES['default']['NAME']}_{name}")
            installation = Installation(root, database.__enter__())
            with_databases.append(database)
        (root / "var").mkdir(parents=True)
        installation.manage("migrate", "--verbosity", "0")
        return installation

    yield make
    for database in with_databases:
        database.__exit__(None, None, None)


def _rewritten(archive: Path, change: Callable[[str, bytes], bytes]) -> Path:
    """A copy of `archive` with each member's bytes passed through `change`."""
    copy = archive.with_name(f"changed-{archive.name}")
    with tarfile.open(archive) as source, tarfile.open(copy, "w") as target:
        for member in source:
            data = change(member.name, source.extractfile(member).read())
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    return copy


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_a_restore_brings_back_every_row_and_file_as_backed_up(new_installation, tmp_path,
                                                              engine):
    rlab = new_installation(engine, "backup_round_trip")
    rlab.scenario("populate")
    before = rlab.snapshot()
    assert len(before["files"]["runs"]) == 8 and len(before["files"]["datasets"]) == 4
    assert len(before["files"]["artifacts"]) == 6
    archive = tmp_path / "rlab.tar"
    output = rlab.manage("backup", str(archive)).stdout
    assert f"Backed up the {engine} database" in output

    rlab.scenario("change")
    changed = rlab.snapshot()
    assert changed["rows"] != before["rows"] and changed["files"] != before["files"]

    rlab.manage("restore", "--yes", str(archive))
    assert rlab.snapshot() == before
    rlab.scenario("add-run")  # the restored sequences go on after the restored rows

    fresh = new_installation(engine, "backup_fresh")
    fresh.manage("restore", "--yes", str(archive))
    assert fresh.snapshot() == before


def test_the_archive_says_what_it_holds(new_installation, tmp_path):
    rlab = new_installation("sqlite", "backup_manifest")
    rlab.scenario("populate")
    archive = tmp_path / "rlab.tar.gz"
    rlab.manage("backup", str(archive))
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert names[:2] == ["manifest.json", "database/sqlite3.db"]
    assert manifest["rlab_version"] == "0.1.0" and manifest["database"]["engine"] == "sqlite"
    assert "0003_activity_verb_deleted" in manifest["migrations"]["reviews"]
    assert manifest["files"]["runs"]["count"] == 8
    assert manifest["files"]["runs"]["path"] == str(tmp_path / "backup_manifest" / "runs")
    assert manifest["files"]["artifacts"]["count"] == 6
    assert all(name.startswith(("manifest", "database/", "files/runs/run-",
                                "files/datasets/blobs/", "files/artifacts/runs/",
                                "files/artifacts/models/")) for name in names)
    assert rlab.manage("backup", str(archive), check=False).returncode != 0  # never overwritten


def test_an_archive_from_a_newer_schema_is_refused_and_nothing_changes(new_installation,
                                                                       tmp_path):
    rlab = new_installation("sqlite", "backup_newer")
    rlab.scenario("populate")
    archive = tmp_path / "rlab.tar"
    rlab.manage("backup", str(archive))

    def newer(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        manifest["migrations"]["runs"].append("0099_from_the_future")
        return json.dumps(manifest).encode()

    rlab.scenario("change")
    changed = rlab.snapshot()
    refused = rlab.manage("restore", "--yes", str(_rewritten(archive, newer)), check=False)
    assert refused.returncode != 0
    assert "comes from a newer schema" in refused.stderr
    assert "runs.0099_from_the_future" in refused.stderr
    assert rlab.snapshot() == changed


def test_a_restore_asks_first_and_without_a_yes_changes_nothing(new_installation, tmp_path):
    rlab = new_installation("sqlite", "backup_confirm")
    rlab.scenario("populate")
    archive = tmp_path / "rlab.tar"
    rlab.manage("backup", str(archive))
    rlab.scenario("change")
    changed = rlab.snapshot()
    answered = rlab.manage("restore", str(archive), stdin="no\n", check=False)
    assert "replaces ALL of this installation's data" in answered.stdout
    assert "Type 'yes' to restore" in answered.stdout
    assert answered.returncode != 0 and "Nothing was restored" in answered.stderr
    assert rlab.snapshot() == changed
    rlab.manage("restore", str(archive), stdin="yes\n")
    assert rlab.snapshot() != changed


def test_a_restore_whose_database_fails_half_way_leaves_everything_as_it_was(
        new_installation, tmp_path):
    rlab = new_installation("postgresql", "backup_half_way")
    rlab.scenario("populate")
    archive = tmp_path / "rlab.tar"
    rlab.manage("backup", str(archive))
    rlab.scenario("change")
    changed = rlab.snapshot()

    def cut_short(name: str, data: bytes) -> bytes:
        return data[:len(data) * 2 // 3] if name.startswith("database/") else data

    failed = rlab.manage("restore", "--yes", str(_rewritten(archive, cut_short)), check=False)
    assert failed.returncode != 0
    assert "Restoring the database failed, and changed nothing" in failed.stderr
    assert "putting the previous files back" in failed.stdout
    assert rlab.snapshot() == changed
    assert sorted(p.name for p in (rlab.root / "runs").iterdir() if p.name.startswith(".")) == []


def test_a_damaged_sqlite_database_is_refused_before_anything_changes(new_installation,
                                                                      tmp_path):
    rlab = new_installation("sqlite", "backup_damaged")
    rlab.scenario("populate")
    archive = tmp_path / "rlab.tar"
    rlab.manage("backup", str(archive))
    rlab.scenario("change")
    changed = rlab.snapshot()

    def damaged(name: str, data: bytes) -> bytes:
        return data[:100] + b"\0" * (len(data) - 100) if name.startswith("database/") else data

    failed = rlab.manage("restore", "--yes", str(_rewritten(archive, damaged)), check=False)
    assert failed.returncode != 0 and "database is damaged" in failed.stderr
    assert rlab.snapshot() == changed


def test_an_archive_that_writes_outside_its_folders_is_refused(new_installation, tmp_path):
    rlab = new_installation("sqlite", "backup_hostile")
    rlab.scenario("populate")
    archive = tmp_path / "rlab.tar"
    rlab.manage("backup", str(archive))
    hostile = tmp_path / "hostile.tar"
    with tarfile.open(archive) as source, tarfile.open(hostile, "w") as target:
        for member in source:
            target.addfile(member, source.extractfile(member))
        escape = tarfile.TarInfo("files/runs/../../escaped.txt")
        escape.size = 4
        target.addfile(escape, io.BytesIO(b"boom"))
    rlab.scenario("change")
    before = rlab.snapshot()
    refused = rlab.manage("restore", "--yes", str(hostile), check=False)
    assert refused.returncode != 0 and "Cannot extract the archive's files" in refused.stderr
    assert not (rlab.root / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert rlab.snapshot() == before
