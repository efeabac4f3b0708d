"""Finds what a script run's trainer writes into the run's folder while it runs, and hands each
finished file or folder to webapp.jobs.script_outputs once:

- rollout files directly in `rollouts_path` (TRL: `*.parquet`, veRL: `*.jsonl`);
- checkpoint folders directly in `checkpoints_path` named `checkpoint-<step>` (TRL's and
  transformers' Trainer's) holding `config.json` and weights (`*.safetensors` or
  `pytorch_model.bin`), or `global_step_<step>` (veRL's) holding them in
  `actor/huggingface` (veRL saves that Hugging Face copy when `save_contents` has `hf_model`).

A trainer writes a file in place, so a file counts as finished only when two looks a scan apart
see the same size and modification time (and, for Parquet, the footer's PAR1 marker at its end);
a folder when the sizes and times of all its files are unchanged. Once the process has ended
everything left is final: a file that still cannot be read is recorded with its problem.

Paths are the template's, relative to the run's folder: one that leads out of it (`..`, an
absolute path, a link) is not scanned, and links inside are never followed, so a trainer cannot
make the worker read or record a file elsewhere on the machine."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.db import DatabaseError, connection

from webapp.jobs import script_outputs
from webapp.jobs.models import OutputKind, RolloutFormat
from webapp.jobs.script_spec import ScriptSpec

logger = logging.getLogger(__name__)

SUFFIXES = {RolloutFormat.TRL: ".parquet", RolloutFormat.VERL: ".jsonl"}
CHECKPOINT_NAME = re.compile(r"(?:checkpoint-|global_step_)(\d{1,12})")
# Where in a checkpoint folder the Hugging Face model may be: the folder itself (transformers),
# or veRL's copy of the actor.
MODEL_SUBFOLDERS = ("", "actor/huggingface")
WEIGHTS = re.compile(r"(.+\.safetensors|pytorch_model(-\d+-of-\d+)?\.bin)")
# Entries looked at in one folder per scan: a trainer that writes millions of files is not
# followed past these.
MAX_ENTRIES = 10_000


def inside(run_folder: Path, relative: str) -> Path | None:
    """`relative` under `run_folder`, if it stays inside it with links resolved; else None."""
    if not relative or "\0" in relative or Path(relative).is_absolute():
        return None
    root = run_folder.resolve()
    try:
        target = (root / relative).resolve()
    except (OSError, RuntimeError):
        return None
    return target if target == root or target.is_relative_to(root) else None


@dataclass
class OutputWatcher:
    """One run's watcher; `scan` is called every few seconds while its process runs, and once
    with `final=True` after it ended."""

    run_id: int
    run_folder: Path
    spec: ScriptSpec
    seen: dict[tuple[str, str], tuple] = field(default_factory=dict)  # the last look at each
    taken: set[tuple[str, str]] | None = None  # read from the database on the first scan

    def scan(self, *, final: bool = False) -> None:
        """Take in what is finished; a database error leaves the rest for the next scan."""
        try:
            if self.taken is None:
                self.taken = script_outputs.script_outputs_taken(run_id=self.run_id)
            if self.spec.rollouts_format in SUFFIXES and self.spec.rollouts_path:
                self._scan_rollouts(final)
            if self.spec.checkpoints_path:
                self._scan_checkpoints(final)
        except DatabaseError:
            logger.warning("run %s: database unavailable, its files are imported later",
                           self.run_id)
            try:
                connection.close()
            except DatabaseError:
                pass

    def _scan_rollouts(self, final: bool) -> None:
        root = inside(self.run_folder, self.spec.rollouts_path)
        if root is None:
            return
        suffix = SUFFIXES[self.spec.rollouts_format]
        for entry in sorted(_entries(root), key=lambda e: e.name):
            if not entry.name.endswith(suffix) or not entry.is_file(follow_symlinks=False):
                continue
            relative = os.path.relpath(entry.path, self.run_folder)
            key = (OutputKind.ROLLOUTS, relative)
            if key in self.taken:
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            look = (stat.st_size, stat.st_mtime_ns)
            stable = self.seen.get(key) == look
            self.seen[key] = look
            if not final and not (stable and _looks_complete(entry.path, suffix, stat.st_size)):
                continue
            script_outputs.script_rollouts_import(
                run_id=self.run_id, relative=relative, path=Path(entry.path),
                format=self.spec.rollouts_format, size=stat.st_size)
            self.taken.add(key)

    def _scan_checkpoints(self, final: bool) -> None:
        root = inside(self.run_folder, self.spec.checkpoints_path)
        if root is None:
            return
        for entry in _entries(root):
            match = CHECKPOINT_NAME.fullmatch(entry.name)
            if match is None or not entry.is_dir(follow_symlinks=False):
                continue
            model = _model_folder(Path(entry.path))
            if model is None:
                continue  # not (yet) a model: no config.json or no weights
            relative = os.path.relpath(model, self.run_folder)
            key = (OutputKind.CHECKPOINT, relative)
            if key in self.taken:
                continue
            look = _folder_look(model)
            if look is None:
                continue
            stable = self.seen.get(key) == look
            self.seen[key] = look
            if not (stable or final):
                continue
            script_outputs.script_checkpoint_record(
                run_id=self.run_id, relative=relative, folder=model,
                step=int(match.group(1)), size=sum(size for _, size, _ in look))
            self.taken.add(key)


def _entries(folder: Path) -> list[os.DirEntry]:
    entries = []
    try:
        with os.scandir(folder) as scan:
            for entry in scan:
                entries.append(entry)
                if len(entries) >= MAX_ENTRIES:
                    break
    except OSError:
        pass
    return entries


def _looks_complete(path: str, suffix: str, size: int) -> bool:
    """Whether a Parquet file has its footer's marker yet (pandas writes it last); a JSON-lines
    file, whether it ends with a newline."""
    try:
        with open(path, "rb") as file:
            if suffix == ".parquet":
                if size < 12 or file.read(4) != b"PAR1":
                    return False
                file.seek(size - 4)
                return file.read(4) == b"PAR1"
            if size == 0:
                return False
            file.seek(size - 1)
            return file.read(1) == b"\n"
    except OSError:
        return False


def _model_folder(folder: Path) -> Path | None:
    """The folder, or the subfolder of it (MODEL_SUBFOLDERS), that holds a Hugging Face model;
    a subfolder is reached through real folders only, never a link."""
    for sub in MODEL_SUBFOLDERS:
        model = folder
        for part in sub.split("/") if sub else ():
            model = model / part
            if model.is_symlink() or not model.is_dir():
                break
        else:
            if _folder_look(model) is not None:
                return model
    return None


def _folder_look(folder: Path) -> tuple | None:
    """(name, size, mtime) of a checkpoint folder's regular files, or None unless it holds a
    config.json and weights as regular files (links are not followed)."""
    files = []
    for entry in _entries(folder):
        if entry.is_file(follow_symlinks=False):
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            files.append((entry.name, stat.st_size, stat.st_mtime_ns))
    names = {name for name, _, _ in files}
    if "config.json" not in names or not any(WEIGHTS.fullmatch(name) for name in names):
        return None
    return tuple(sorted(files))
