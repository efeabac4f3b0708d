"""Helpers for the script-run tests: a script run made as the jobs engineer's launch makes it (an
experiment of kind script, the ScriptSpec in the run's config), and the processes it started."""

from __future__ import annotations

import sys
from pathlib import Path

from webapp.experiments.models import Experiment, ExperimentKind
from webapp.jobs.script_spec import ScriptSpec
from webapp.projects.activity import Verb
from webapp.runs.services import run_create

PYTHON = sys.executable


def script_experiment(project, user, name: str = "scripts") -> Experiment:
    experiment, _ = Experiment.objects.get_or_create(
        project=project, name=name,
        defaults={"author": user, "kind": ExperimentKind.SCRIPT, "config": {}})
    return experiment


def launch_script(project, user, argv: list[str], *, queue: str = "cpu", **spec):
    """A queued script run of `argv`, enqueued on commit as a launch enqueues it."""
    config = {"script": ScriptSpec(argv=[str(arg) for arg in argv], **spec).to_dict()}
    return run_create(experiment=script_experiment(project, user), config=config, user=user,
                      verb=Verb.LAUNCHED, queue=queue)


def python_script(code: str) -> list[str]:
    return [PYTHON, "-c", code]


def script_processes(run_id: int) -> dict[int, str]:
    """Live processes (not zombies) started for a script run, by pid, with their command lines:
    those with its RLAB_RUN_ID in their environment."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"\0RLAB_RUN_ID={run_id}\0".encode() in b"\0" + environ and state != "Z":
            found[int(entry.name)] = cmdline
    return found
