"""Backing up and restoring a whole installation: its database and its files (RLAB_RUN_DIR with
the runs' checkpoints, RLAB_DATASET_DIR with the dataset files, RLAB_ARTIFACT_DIR with the files
scripts logged), in one tar archive
(`manage.py backup`, `manage.py restore`).

The archive holds, in this order:

    manifest.json              what made it (rlab's version, the migrations applied), and what it
                               holds: the database's engine, the files' counts and bytes
    database/postgresql.dump   pg_dump's custom format, or
    database/sqlite3.db        a copy made with SQLite's backup API, consistent while in use
    files/runs/…               RLAB_RUN_DIR
    files/datasets/…           RLAB_DATASET_DIR (the blobs; uploads still awaiting confirmation
                               are left out)
    files/artifacts/…          RLAB_ARTIFACT_DIR, the artifact store when it is a folder (an
                               S3 bucket is backed up where it is kept)

The database is dumped before the files are read, so every checkpoint and dataset the dump lists
had its files written already (a checkpoint that training rotated away meanwhile is left out).

A restore replaces everything, and changes nothing until it has all of it ready: it checks the
manifest (an archive from a newer schema is refused), extracts the files next to the current
ones, swaps them in, then replaces the database in one transaction (Postgres: dropped and
restored in one transaction; SQLite: the backup API, which writes the database in one
transaction). If that fails, the previous files are swapped back, so the installation is as it
was. Then migrations bring an archive of an older schema up to date.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from io import BytesIO
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

logger = logging.getLogger(__name__)

ARCHIVE_FORMAT = 1
MANIFEST = "manifest.json"
DATABASE_MEMBERS = {"postgresql": "database/postgresql.dump", "sqlite": "database/sqlite3.db"}
FILES_PREFIX = "files/"
# A restore waits this long for the locks on the current tables (a web server or a worker in
# the middle of a transaction), then gives up with nothing changed.
LOCK_TIMEOUT = "60s"
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileRoot:
    """A folder the archive holds, as `files/<name>/…`."""

    name: str
    path: Path
    # Top-level entries left out: transient things that a restore must not bring back.
    skip: frozenset[str] = frozenset()


def file_roots() -> list[FileRoot]:
    return [
        FileRoot("runs", Path(settings.RLAB_RUN_DIR).absolute()),
        # staging/: uploads not confirmed yet, which the session that made them no longer knows
        # after a restore.
        FileRoot("datasets", Path(settings.RLAB_DATASET_DIR).absolute(),
                 skip=frozenset({"staging"})),
        # .incoming/: uploads being received. A bucket (RLAB_ARTIFACT_BUCKET) is not a folder
        # here: it is backed up where it is kept.
        *([FileRoot("artifacts", Path(settings.RLAB_ARTIFACT_DIR).absolute(),
                    skip=frozenset({".incoming"}))] if not settings.RLAB_ARTIFACT_BUCKET else []),
    ]


def rlab_version() -> str:
    try:
        return metadata.version("rlab")
    except metadata.PackageNotFoundError:
        return "unknown"


def backup_create(*, archive: Path, log: Callable[[str], None] = logger.info) -> dict[str, Any]:
    """Write the database and the files to `archive` (a new file: .tar, or .tar.gz / .tgz to
    compress it, which checkpoints hardly reward). Written under a temporary name and renamed
    when complete, so a failed backup leaves no archive. Returns the manifest."""
    archive = archive.absolute()
    if archive.exists():
        raise CommandError(f"{archive} exists already: give the backup a new name.")
    if not archive.parent.is_dir():
        raise CommandError(f"{archive.parent} is not a folder: create it, or back up elsewhere.")
    vendor = _vendor()
    partial = archive.with_name(f".{archive.name}.{secrets.token_hex(4)}.partial")
    try:
        with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".rlab-backup-") as work:
            dump = Path(work) / "database"
            log(f"Dumping the {vendor} database…")
            _database_dump(dump)
            files = {root.name: list(_walk(root)) for root in file_roots()}
            manifest = {
                "format": ARCHIVE_FORMAT,
                "rlab_version": rlab_version(),
                "created_at": timezone.now().isoformat(),
                "database": {"engine": vendor, "member": DATABASE_MEMBERS[vendor],
                             "bytes": dump.stat().st_size},
                "migrations": _applied_migrations(),
                "files": {root.name: {"path": str(root.path),
                                      "count": len(files[root.name]),
                                      "bytes": sum(size for _, size in files[root.name])}
                          for root in file_roots()},
            }
            with tarfile.open(partial, _write_mode(archive)) as tar:
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
                tar.add(dump, arcname=DATABASE_MEMBERS[vendor], recursive=False)
                for root in file_roots():
                    log(f"Adding {manifest['files'][root.name]['count']:,} files from "
                        f"{root.path}…")
                    for relative, _ in files[root.name]:
                        try:
                            tar.add(root.path / relative,
                                    arcname=f"{FILES_PREFIX}{root.name}/{relative}",
                                    recursive=False)
                        except FileNotFoundError:
                            log(f"Left out {root.path / relative}: removed while backing up.")
                        except OSError as exc:  # shrank while copied: the archive is broken
                            raise CommandError(
                                f"{root.path / relative} changed while it was backed up "
                                f"({exc}): back up again, best while no run trains.") from None
        os.replace(partial, archive)
    finally:
        partial.unlink(missing_ok=True)
    return manifest


def archive_manifest(archive: Path) -> dict[str, Any]:
    """The manifest of `archive`, checked: CommandError if it is no rlab backup, or one this rlab
    cannot restore (a newer format or schema, or another database engine)."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST:
                raise CommandError(f"{archive} is not an rlab backup: it does not start with "
                                   f"{MANIFEST}.")
            manifest = json.load(tar.extractfile(member))
    except (OSError, tarfile.TarError, json.JSONDecodeError) as exc:
        raise CommandError(f"Cannot read {archive} as an rlab backup: {exc}") from None
    if manifest.get("format", 0) > ARCHIVE_FORMAT:
        raise CommandError(f"{archive} was made by a newer rlab ({manifest.get('rlab_version')})"
                           f" in a format this one cannot read: upgrade rlab, then restore.")
    unknown = sorted({(app, name) for app, names in manifest["migrations"].items()
                      for name in names} - _known_migrations())
    if unknown:
        listed = ", ".join(f"{app}.{name}" for app, name in unknown[:5])
        raise CommandError(
            f"{archive} comes from a newer schema (rlab {manifest.get('rlab_version')}): this "
            f"rlab ({rlab_version()}) does not know its migration{'s' if len(unknown) > 1 else ''}"
            f" {listed}. Upgrade rlab to that version or newer, then restore.")
    engine, vendor = manifest["database"]["engine"], _vendor()
    if engine != vendor:
        raise CommandError(f"{archive} holds a {engine} database and this installation uses "
                           f"{vendor}: restore it into a {engine} installation (DATABASE_URL).")
    return manifest


def restore_summary(archive: Path, manifest: dict[str, Any]) -> str:
    """What a restore of `archive` replaces, for the confirmation."""
    lines = [f"{archive}: made {manifest['created_at']} by rlab {manifest['rlab_version']}, "
             f"with a {manifest['database']['engine']} database and "
             f"{files_summary(manifest)}.",
             f"Restoring it replaces ALL of this installation's data: the {_vendor()} database "
             f"{_database_name()}, and the files under "
             f"{' and '.join(str(root.path) for root in file_roots())}."]
    others = _other_connections()
    if others:
        lines.append(f"{others} other connection{'s are' if others > 1 else ' is'} open to the "
                     f"database (a web server, a worker?): stop them first; the restore waits "
                     f"{LOCK_TIMEOUT} for their locks, then gives up with nothing changed.")
    return "\n".join(lines)


def files_summary(manifest: dict[str, Any]) -> str:
    """'12 files of runs (1.2 GB), 4 files of datasets (3.4 MB)'."""
    return ", ".join(f"{entry['count']:,} file{'' if entry['count'] == 1 else 's'} of {name} "
                     f"({filesizeformat(entry['bytes'])})"
                     for name, entry in manifest["files"].items())


def backup_restore(*, archive: Path, manifest: dict[str, Any],
                   log: Callable[[str], None] = logger.info) -> None:
    """Replace the database and the files with the archive's (archive_manifest checked it).
    When a step fails, what it changed is put back and CommandError says why."""
    connections.close_all()
    with tarfile.open(archive) as tar, _work_folder() as work:
        log("Reading the archive…")
        database = work / "database"
        try:
            member = tar.getmember(manifest["database"]["member"])
        except KeyError:
            raise CommandError(f"{archive} lacks the database its manifest lists: nothing was "
                               f"restored.") from None
        with tar.extractfile(member) as source, database.open("wb") as target:
            shutil.copyfileobj(source, target, _COPY_CHUNK)
        if _vendor() == "sqlite":
            _sqlite_check(database)
        with _staged_files(tar) as swaps:
            log("Restoring the database…")
            try:
                _database_restore(database)
            except BaseException:
                log("The database restore failed: putting the previous files back.")
                for swap in reversed(swaps):
                    swap.undo()
                raise
            for swap in swaps:
                swap.finish()
    log("Applying migrations the archive's schema lacks…")
    call_command("migrate", verbosity=0)


# The database -------------------------------------------------------------------------------

def _vendor() -> str:
    if connection.vendor not in DATABASE_MEMBERS:
        raise CommandError(f"Backups cover PostgreSQL and SQLite, not {connection.vendor}.")
    return connection.vendor


def _database_name() -> str:
    return str(connection.settings_dict["NAME"])


def _applied_migrations() -> dict[str, list[str]]:
    applied: dict[str, list[str]] = {}
    for app, name in sorted(MigrationRecorder(connection).applied_migrations()):
        applied.setdefault(app, []).append(name)
    return applied


def _known_migrations() -> set[tuple[str, str]]:
    return set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)


def _other_connections() -> int:
    if _vendor() != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                       " AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def _database_dump(path: Path) -> None:
    if _vendor() == "sqlite":
        with _sqlite(_database_name()) as source, _sqlite(path) as target:
            source.backup(target)
        return
    _run_client(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                 f"--file={path}"])


def _database_restore(dump: Path) -> None:
    if _vendor() == "sqlite":
        with _sqlite(dump) as source, _sqlite(_database_name()) as target:
            source.backup(target)
        return
    _postgres_restore(dump)


# Every table of the schema goes, not only the dump's: a table that a later migration made would
# otherwise stay, and the migrations that follow the restore would fail on it.
_DROP_TABLES = """
DO $$DECLARE t record; BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', t.tablename);
  END LOOP;
END$$;
"""


def _postgres_restore(dump: Path) -> None:
    """Drop the tables and restore the dump in one transaction, committed only if pg_restore
    read the whole dump and every statement succeeded: on any failure Postgres rolls it all back.

    psql runs the SQL that pg_restore writes; the COMMIT is sent last, and only once pg_restore
    has exited cleanly, since a dump cut short can end on a statement boundary."""
    with tempfile.TemporaryFile() as psql_errors, tempfile.TemporaryFile() as restore_errors:
        psql = _client(["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1"],
                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_errors)
        restore = _client(["pg_restore", "--no-owner", "--no-privileges", "--no-comments",
                           "--file=-", str(dump)], stdout=subprocess.PIPE, stderr=restore_errors)
        assert psql.stdin is not None and restore.stdout is not None
        try:
            psql.stdin.write(f"SET client_min_messages = warning;\nBEGIN;\n"
                             f"SET lock_timeout = '{LOCK_TIMEOUT}';\n{_DROP_TABLES}\n".encode())
            shutil.copyfileobj(restore.stdout, psql.stdin, _COPY_CHUNK)
            restored = restore.wait() == 0
            if restored:
                psql.stdin.write(b"COMMIT;\n")
            psql.stdin.close()
        except BrokenPipeError:
            restored = False  # psql stopped at an error: it says which below
            restore.kill()
            restore.wait()
        if psql.wait() != 0 or not restored:
            errors = psql_errors if restored or restore.returncode < 0 else restore_errors
            errors.seek(0)
            why = errors.read().decode(errors="replace").strip()
            raise CommandError(f"Restoring the database failed, and changed nothing: {why}")


def _client(command: list[str], **options: Any) -> subprocess.Popen:
    """A PostgreSQL client program, connected to the installation's database."""
    try:
        return subprocess.Popen(command, env=_postgres_environment(), **options)
    except FileNotFoundError:
        raise CommandError(f"{command[0]} is not installed: install the PostgreSQL client "
                           f"programs (Debian: postgresql-client), of the server's major version "
                           f"or newer.") from None


def _run_client(command: list[str]) -> None:
    with tempfile.TemporaryFile() as errors:
        process = _client(command, stdout=subprocess.DEVNULL, stderr=errors)
        if process.wait() != 0:
            errors.seek(0)
            raise CommandError(f"{command[0]} failed: "
                               f"{errors.read().decode(errors='replace').strip()}")


def _postgres_environment() -> dict[str, str]:
    """libpq's variables for the installation's database, so that no password appears on a
    command line."""
    database = connection.settings_dict
    variables = {"PGDATABASE": database["NAME"], "PGHOST": database.get("HOST"),
                 "PGPORT": database.get("PORT"), "PGUSER": database.get("USER"),
                 "PGPASSWORD": database.get("PASSWORD"),
                 "PGSSLMODE": database.get("OPTIONS", {}).get("sslmode")}
    return {**os.environ, **{name: str(value) for name, value in variables.items() if value}}


@contextmanager
def _sqlite(path: Path | str) -> Iterator[sqlite3.Connection]:
    database = sqlite3.connect(path, timeout=30)
    try:
        yield database
    finally:
        database.close()


def _sqlite_check(path: Path) -> None:
    try:
        with _sqlite(path) as database:
            result = database.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        result = str(exc)
    if result != "ok":
        raise CommandError(f"The archive's database is damaged ({result}): nothing was "
                           f"restored.")


# The files ----------------------------------------------------------------------------------

def _walk(root: FileRoot) -> Iterator[tuple[str, int]]:
    """(path relative to the root, bytes) of every regular file under it; links and the root's
    skipped entries are left out."""
    if not root.path.is_dir():
        return
    for folder, folders, files in os.walk(root.path):
        here = Path(folder)
        if here == root.path:
            folders[:] = [name for name in folders if name not in root.skip]
        for name in sorted(files):
            path = here / name
            if name.startswith(".incoming-") or path.is_symlink():
                continue  # a blob being written, or a link that may lead anywhere
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            yield path.relative_to(root.path).as_posix(), size


def _write_mode(archive: Path) -> str:
    return "w:gz" if archive.name.endswith((".tar.gz", ".tgz")) else "w"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(timezone.now().timestamp())
    info.mode = 0o644
    tar.addfile(info, BytesIO(data))


@contextmanager
def _work_folder() -> Iterator[Path]:
    """Room for the extracted database dump, on the installation's disk rather than in /tmp."""
    Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.VAR_DIR, prefix=".rlab-restore-") as work:
        yield Path(work)


class _Swap:
    """A root's entries replaced by those extracted into `staged`, both inside the root, so that
    every move is a rename on one file system, and the root may be a mount point. It records
    each move, so that `undo` puts back exactly what was moved, however far `apply` got."""

    def __init__(self, root: FileRoot, token: str):
        self.root = root.path
        self.staged = self.root / f".restore-{token}"
        self.previous = self.root / f".before-restore-{token}"
        self._kept: list[str] = []  # moved from the root into `previous`
        self._placed: list[str] = []  # moved from `staged` into the root

    def apply(self) -> None:
        self.previous.mkdir()
        for entry in list(self.root.iterdir()):
            if entry not in (self.staged, self.previous):
                entry.rename(self.previous / entry.name)
                self._kept.append(entry.name)
        for entry in list(self.staged.iterdir()):
            entry.rename(self.root / entry.name)
            self._placed.append(entry.name)

    def undo(self) -> None:
        """Put the previous entries back; what was restored goes."""
        for name in reversed(self._placed):
            (self.root / name).rename(self.staged / name)
        for name in reversed(self._kept):
            (self.previous / name).rename(self.root / name)
        self._placed, self._kept = [], []
        self.finish()

    def finish(self) -> None:
        for folder in (self.staged, self.previous):
            if folder.exists():
                _remove(folder)


@contextmanager
def _staged_files(tar: tarfile.TarFile) -> Iterator[list[_Swap]]:
    """Extract the archive's files next to each root's current ones, then swap them in; yields
    the swaps, for the caller to finish or undo. On a failure before the yield nothing has
    changed: what was extracted goes, and what was moved is moved back."""
    token = secrets.token_hex(4)
    swaps = []
    try:
        for root in file_roots():
            root.path.mkdir(parents=True, exist_ok=True)
            swap = _Swap(root, token)
            swap.staged.mkdir()
            swaps.append(swap)
        by_root = {root.name: swap for root, swap in zip(file_roots(), swaps, strict=True)}
        try:
            for member in tar:
                if not member.name.startswith(FILES_PREFIX):
                    continue
                name, _, relative = member.name[len(FILES_PREFIX):].partition("/")
                swap = by_root.get(name)
                if swap is None or not relative:
                    continue
                # The data filter refuses absolute paths, "..", links and devices: an archive,
                # whoever made it, writes inside the staging folder only.
                tar.extract(member.replace(name=relative, deep=False), swap.staged,
                            filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise CommandError(f"Cannot extract the archive's files ({exc}): nothing was "
                               f"restored.") from None
        for swap in swaps:
            swap.apply()
    except BaseException:
        for swap in reversed(swaps):
            swap.undo()
        raise
    yield swaps


def _remove(path: Path) -> None:
    def failed(function: Any, failing: str, exc_info: Any) -> None:
        logger.warning("could not remove %s: %s", failing, exc_info[1])

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=failed)
    else:
        path.unlink(missing_ok=True)
