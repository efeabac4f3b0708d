"""Checkpoints: a Hugging Face model folder that also holds what a run needs to go on exactly.

    checkpoint-<step>/
        config.json, model.safetensors, generation_config.json, tokenizer files
                            the policy, loadable by transformers and vLLM as it is (a LoRA
                            policy's adapters merged in)
        adapter/            a LoRA policy's adapters alone, in peft's format
        trainer_state.json  step, the run's config, prompt sampler, SPO tracker, KL coefficient
        training_state.pt   optimiser, LR scheduler, RNG states (torch, CUDA, numpy, Python),
                            an EMA reference and a PPO value head

A checkpoint is written to a hidden folder and renamed into place, so a folder named
checkpoint-<step> is always complete, even if the process dies while saving.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

TRAINER_STATE = "trainer_state.json"
TRAINING_STATE = "training_state.pt"
ADAPTER = "adapter"


class CheckpointError(ValueError):
    """A folder that is not a checkpoint this version can resume; the message says why."""


@dataclass
class Checkpoint:
    """What `load` reads back: the JSON state and the tensors."""

    path: Path
    state: dict[str, Any]  # step, config, sampler, tracker, kl
    tensors: dict[str, Any]  # optimizer, scheduler, rng, reference, value_head

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def adapter(self) -> Path | None:
        folder = self.path / ADAPTER
        return folder if folder.is_dir() else None


def save(output_dir: Path, step: int, *, model, tokenizer, state: dict[str, Any],
         tensors: dict[str, Any], keep: int) -> Path:
    """Write checkpoint-<step> under `output_dir`, delete all but the newest `keep`, return it."""
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"checkpoint-{step}"
    staging = Path(tempfile.mkdtemp(prefix=f".checkpoint-{step}-", dir=output_dir))
    try:
        _save_model(model, tokenizer, staging)
        (staging / TRAINER_STATE).write_text(json.dumps({"step": step, **state}, indent=1))
        torch.save({**tensors, "rng": rng_state()}, staging / TRAINING_STATE)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint folder's state (the model is loaded from the same folder)."""
    path = Path(path).expanduser()
    if not (path / TRAINER_STATE).is_file() or not (path / TRAINING_STATE).is_file():
        what = "does not exist" if not path.exists() else "is not an rlab checkpoint"
        raise CheckpointError(f"Cannot resume from {str(path)!r}: it {what} (a checkpoint "
                              f"folder holds {TRAINER_STATE} and {TRAINING_STATE}).")
    state = json.loads((path / TRAINER_STATE).read_text())
    # weights_only=False: the file holds Python RNG state tuples and numpy arrays, and it is
    # one this program wrote into the run's own folder.
    tensors = torch.load(path / TRAINING_STATE, map_location="cpu", weights_only=False)
    return Checkpoint(path=path, state=state, tensors=tensors)


def list_checkpoints(output_dir: Path) -> list[Path]:
    """checkpoint-<step> folders in `output_dir`, oldest step first."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir()
             and p.name.removeprefix("checkpoint-").isdigit()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("checkpoint-")))


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_model(model, tokenizer, folder: Path) -> None:
    if hasattr(model, "merge_and_unload"):  # a LoRA policy
        model.save_pretrained(folder / ADAPTER)
        plain = copy.deepcopy(model).merge_and_unload()
    else:
        plain = model
    plain.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
