"""The layering contracts in pyproject.toml ([tool.importlinter]) hold, and each one catches an
import that breaks it: a copy of the code with one such import planted fails `lint-imports`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each package's folder in the checkout: the SDK is its own distribution, in client/.
PACKAGES = {"webapp": "webapp", "worker": "worker", "training": "training", "rlab": "client/rlab"}
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", "pyproject.toml"],
                          cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """The four packages and pyproject.toml, copied as they are."""
    copy = tmp_path_factory.mktemp("layering")
    for package, folder in PACKAGES.items():
        shutil.copytree(ROOT / folder, copy / package,
                        ignore=shutil.ignore_patterns("__pycache__", "migrations"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_code_keeps_every_contract(tree):
    result = _lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("webapp/runs/planted.py", "import torch",
     "The web app, the worker and the SDK import no machine-learning library"),
    ("rlab/planted.py", "from transformers import AutoModel",
     "The web app, the worker and the SDK import no machine-learning library"),
    ("worker/planted.py", "from training.loops import online",
     "The web app, the worker and the SDK use only training's torch-free part, training.spec"),
    ("webapp/planted.py", "from training.algorithms import grpo",
     "The web app, the worker and the SDK use only training's torch-free part, training.spec"),
    ("training/spec/planted.py", "import torch",
     "training.spec, which describes runs, imports neither torch nor the engine"),
    ("training/spec/planted.py", "from training.policies import loading",
     "training.spec, which describes runs, imports neither torch nor the engine"),
    ("training/algorithms/planted.py", "from training.loops import online",
     "The training engine runs one way, from its entry points down to training.spec"),
    ("training/planted.py", "from django.conf import settings",
     "The training library imports no Django, web app, worker or Celery"),
    ("training/planted.py", "import webapp.runs.models",
     "The training library imports no Django, web app, worker or Celery"),
    ("webapp/runs/planted.py", "from worker.tasks import run_execute",
     "The web app and the SDK import no worker module (runs reach it by task name)"),
    ("webapp/common/planted.py", "from webapp.runs.models import Run",
     "webapp.common, beneath every app, imports none of them"),
    ("webapp/runs/planted.py", "from webapp.reviews import models",
     "The web app's apps import only the apps beneath them"),
    ("webapp/live/planted.py", "from webapp.rollouts import rollout_browser",
     "The web app's apps import only the apps beneath them"),  # siblings: neither imports
])
def test_a_planted_import_breaks_its_contract(tree, module, line, contract):
    planted = tree / module
    # Inside a function, as the lazy imports that the contracts must catch too.
    planted.write_text(f"def load():\n    {line}\n")
    try:
        result = _lint_imports(tree)
    finally:
        planted.unlink()
    assert result.returncode == 1, result.stdout + result.stderr
    # lint-imports wraps its lines at 80 columns: compare the words.
    assert f"{contract} BROKEN" in " ".join(result.stdout.split()), result.stdout
