"""What a run may load: model references (training.spec.model_refs) checked against a project, and
turned into folders for the worker.

A config names models; it never names paths. `checkpoint:<id>` is a checkpoint of a run in the
same project, `local:<name>` a model under one of the RLAB_MODEL_ROOTS an administrator fills,
`builtin:` a model shipped with rlab, anything else a hub id. The checks answer the same for a
checkpoint of another project as for one that does not exist, and never say whether a path
exists. The worker resolves again when the run starts (`config_for_worker`), so a checkpoint
deleted, or a model root emptied, since the launch is caught there too.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from training.spec.config import Settings
from training.spec.model_refs import BUILTIN_MODELS, ModelRef, RefKind, parse_model_refs
from webapp.runs.models import Checkpoint

# Registered models are found at most this deep under a root: name, or group/name.
_LEVELS = 2


def registered_models() -> dict[str, Path]:
    """local:<name> → its folder or GGUF file, for every model under the model roots; the first
    root wins a name that two roots hold."""
    found: dict[str, Path] = {}
    for root in settings.RLAB_MODEL_ROOTS:
        for path in _models_under(root):
            found.setdefault(path.relative_to(root).as_posix(), path)
    return dict(sorted(found.items()))


def _models_under(root: Path) -> list[Path]:
    models: list[Path] = []
    folders = [root]
    for _ in range(_LEVELS):
        children: list[Path] = []
        for folder in folders:
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue  # a root that is missing or unreadable holds no models
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_file() and entry.suffix.lower() == ".gguf":
                    models.append(entry)
                elif (entry / "config.json").is_file():
                    models.append(entry)
                elif entry.is_dir():
                    children.append(entry)
        folders = children
    return models


def _registered_path(name: str) -> Path | None:
    for root in settings.RLAB_MODEL_ROOTS:
        path = root / name
        # The name's syntax admits no "..", and a link inside a root may not lead out of it.
        try:
            real = path.resolve(strict=True)
        except OSError:
            continue
        if real.is_relative_to(root.resolve()) and (
                (real / "config.json").is_file() or real.suffix.lower() == ".gguf"):
            return path
    return None


def _project_checkpoint(project_id: int, checkpoint_id: int) -> Checkpoint | None:
    return (Checkpoint.objects.filter(pk=checkpoint_id, run__experiment__project_id=project_id)
            .select_related("run__experiment").first())


def _checkpoint_folder(checkpoint: Checkpoint) -> str | None:
    """The checkpoint's folder, if it is still there. Only a worker records a checkpoint's
    path: the one its training process saved the checkpoint to."""
    return checkpoint.path if os.path.isdir(checkpoint.path) else None


def _problem(ref: ModelRef, project_id: int) -> str | None:
    """Why `ref` cannot be loaded by a run of the project; None if it can."""
    if ref.kind == RefKind.BUILTIN and str(ref) not in BUILTIN_MODELS:
        return f"there is no built-in model {ref.value!r}; built-in: {', '.join(BUILTIN_MODELS)}"
    if ref.kind == RefKind.LOCAL and _registered_path(ref.value) is None:
        return (f"no model is registered as {str(ref)!r}: pick one from the list, or ask an "
                f"administrator to put it under a model root (RLAB_MODEL_ROOTS)")
    if ref.kind == RefKind.CHECKPOINT:
        checkpoint = _project_checkpoint(project_id, ref.checkpoint_id)
        if checkpoint is None:
            return f"this project has no checkpoint {ref.value}"
        if _checkpoint_folder(checkpoint) is None:
            return (f"the folder of {checkpoint} (checkpoint {ref.value}) is gone: newer "
                    f"checkpoints replaced it (keep_checkpoints)")
    return None


def _model_fields(config_class: type[Settings], config: dict[str, Any],
                  ) -> list[dataclasses.Field]:
    """The fields of `config` that name models, its algorithm's own included."""
    return [f for f in config_class.fields_of(config) if f.metadata["models"]]


def config_model_errors(*, project_id: int, config: dict[str, Any],
                        config_class: type[Settings]) -> dict[str, str]:
    """For each field of a validated config that names a model the project's runs cannot load,
    what is wrong, by field name."""
    errors: dict[str, str] = {}
    for f in _model_fields(config_class, config):
        for ref in parse_model_refs(config.get(f.name) or ""):
            if problem := _problem(ref, project_id):
                errors[f.name] = problem
                break
    return errors


def config_models_check(*, project_id: int, config: dict[str, Any],
                        config_class: type[Settings]) -> None:
    """ValidationError, with a message per bad field ("model: …"), unless every model the
    config names can be loaded by a run of the project."""
    errors = config_model_errors(project_id=project_id, config=config, config_class=config_class)
    if errors:
        raise ValidationError([f"{name}: {message}" for name, message in errors.items()])


def config_for_worker(*, project_id: int, config: dict[str, Any],
                      config_class: type[Settings]) -> dict[str, Any]:
    """The config with its checkpoint: and local: references replaced by their folders, as the
    training process loads them; ValidationError, saying what to do, if one cannot be loaded."""
    config_models_check(project_id=project_id, config=config, config_class=config_class)
    resolved = dict(config)
    for f in _model_fields(config_class, config):
        refs = parse_model_refs(config.get(f.name) or "")
        if refs:
            resolved[f.name] = ", ".join(_worker_source(ref, project_id) for ref in refs)
    return resolved


def _worker_source(ref: ModelRef, project_id: int) -> str:
    if ref.kind == RefKind.CHECKPOINT:
        checkpoint = _project_checkpoint(project_id, ref.checkpoint_id)
        folder = _checkpoint_folder(checkpoint) if checkpoint is not None else None
        if folder is None:  # deleted between the check and now
            raise ValidationError(f"Checkpoint {ref.value} is gone.")
        return folder
    if ref.kind == RefKind.LOCAL:
        path = _registered_path(ref.value)
        if path is None:
            raise ValidationError(f"No model is registered as {str(ref)!r} any more.")
        return str(path)
    return str(ref)


def model_choices(*, project_id: int, limit: int = 50) -> list[tuple[str, str]]:
    """(reference, label) of what a run of the project can load, for the form's picker: the
    built-in models, the registered ones, and the project's newest checkpoints still on disk."""
    choices = [(name, "built-in") for name in BUILTIN_MODELS]
    choices += [(f"local:{name}", "registered model") for name in registered_models()]
    # Older checkpoints' folders are mostly deleted (keep_checkpoints): look a little further.
    recent = (Checkpoint.objects.filter(run__experiment__project_id=project_id)
              .select_related("run__experiment").order_by("-created_at", "-step")[:limit * 5])
    on_disk = [c for c in recent if os.path.isdir(c.path)][:limit]
    return choices + [(f"checkpoint:{c.pk}", f"{c.run} · step {c.step}") for c in on_disk]
