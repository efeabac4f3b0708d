"""What a script run's watcher takes in from the run's folder, scan by scan (no worker: the scans
are called as the worker calls them)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.worker.script_runs import launch_script
from webapp.jobs.models import ScriptOutput
from webapp.jobs.script_spec import ScriptSpec
from webapp.runs.models import Checkpoint, LogLine, Rollout
from worker.script_outputs import OutputWatcher, inside

pytestmark = pytest.mark.django_db


def write_completions(path: Path, step: int) -> None:
    pq.write_table(pa.table({"step": [step] * 2, "prompt": ["1+1?"] * 2,
                             "completion": ["2", "3"], "correct": [1.0, 0.0],
                             "advantage": [0.5, -0.5]}), path)


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "run" / "completions").mkdir(parents=True)
    return tmp_path / "run"


@pytest.fixture
def watcher(project, user, folder) -> OutputWatcher:
    spec = {"rollouts_format": "trl", "rollouts_path": "completions", "checkpoints_path": "."}
    run = launch_script(project, user, ["true"], **spec)
    return OutputWatcher(run_id=run.pk, run_folder=folder, spec=ScriptSpec(argv=["true"], **spec))


def test_paths_that_lead_out_of_the_runs_folder_are_not_scanned(tmp_path, folder):
    os.symlink(tmp_path, folder / "elsewhere")
    assert inside(folder, "completions") == (folder / "completions").resolve()
    assert inside(folder, ".") == folder.resolve()
    for path in ("../", "completions/../..", "/etc", "elsewhere", "", "a\0b"):
        assert inside(folder, path) is None, path


def test_a_file_is_imported_once_after_two_looks_see_it_unchanged(watcher, folder):
    write_completions(folder / "completions" / "completions_00001.parquet", 1)
    watcher.scan()
    assert not Rollout.objects.exists(), "one look cannot tell that it is finished"
    watcher.scan()
    assert Rollout.objects.count() == 2
    watcher.scan()
    again = OutputWatcher(run_id=watcher.run_id, run_folder=folder, spec=watcher.spec)
    again.scan()
    again.scan(final=True)
    assert Rollout.objects.count() == 2
    assert ScriptOutput.objects.get().path == "completions/completions_00001.parquet"


def test_a_parquet_file_without_its_footer_waits_and_is_named_after_the_end(watcher, folder):
    write_completions(folder / "completions" / "completions_00001.parquet", 1)
    (folder / "completions" / "completions_00002.parquet").write_bytes(b"PAR1 half written")
    watcher.scan()
    watcher.scan()
    assert not ScriptOutput.objects.filter(path__endswith="00002.parquet").exists()
    watcher.scan(final=True)
    bad = ScriptOutput.objects.get(path="completions/completions_00002.parquet")
    assert "cannot be read as Parquet" in bad.problem or "not a Parquet file" in bad.problem
    assert LogLine.objects.filter(message__startswith=f"Could not import {bad.path}").exists()
    assert Rollout.objects.count() == 2


def test_links_are_never_followed(watcher, folder, tmp_path, tiny_model):
    write_completions(tmp_path / "secret.parquet", 7)
    os.symlink(tmp_path / "secret.parquet", folder / "completions" / "completions_00007.parquet")
    os.symlink(tiny_model, folder / "checkpoint-3")
    linked = folder / "checkpoint-5"
    linked.mkdir()
    for name in os.listdir(tiny_model):
        os.symlink(Path(tiny_model) / name, linked / name)
    watcher.scan()
    watcher.scan(final=True)
    assert not Rollout.objects.exists() and not Checkpoint.objects.exists()
    assert not ScriptOutput.objects.exists()


def test_verl_checkpoints_are_taken_from_their_hugging_face_copy(watcher, folder, tiny_model):
    """veRL writes global_step_<N>/actor/huggingface; the checkpoint is that folder, at step N.
    A link on the way is not followed."""
    model = folder / "global_step_20" / "actor" / "huggingface"
    model.mkdir(parents=True)
    for name in os.listdir(tiny_model):
        if os.path.isfile(Path(tiny_model) / name):
            (model / name).write_bytes((Path(tiny_model) / name).read_bytes())
    (folder / "global_step_30").mkdir()
    os.symlink(folder / "global_step_20" / "actor", folder / "global_step_30" / "actor")
    watcher.scan()
    watcher.scan()
    checkpoint = Checkpoint.objects.get()
    assert (checkpoint.step, Path(checkpoint.path)) == (20, model.resolve())
    assert ScriptOutput.objects.get().path == "global_step_20/actor/huggingface"
