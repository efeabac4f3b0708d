"""Checkpoints: a Hugging Face model folder that also holds what a run needs to go on exactly.

    checkpoint-<step>/
        config.json, model.safetensors, generation_config.json, tokenizer files
                            the policy, loadable by transformers and vLLM as it is (a LoRA
                            policy's adapters merged in)
        adapter/            a LoRA policy's adapters alone, in peft's format
        trainer_state.json  step, the run's config, prompt sampler, SPO tracker, KL coefficient
        training_state.safetensors, training_state.json
                            optimiser, LR scheduler, RNG states (torch, CUDA, numpy, Python),
                            an EMA reference and a PPO value head: the tensors in safetensors,
                            the structure around them (and plain numbers) in JSON

Nothing in a checkpoint is pickled, so loading one runs no code, whoever wrote the folder.
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
from safetensors.torch import load_file, save_file

from training.spec.checkpoint_names import checkpoint_folder_name, checkpoint_step

TRAINER_STATE = "trainer_state.json"
TRAINING_TENSORS = "training_state.safetensors"
TRAINING_STRUCTURE = "training_state.json"
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
         tensors: dict[str, Any], keep: int,
         weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Write checkpoint-<step> under `output_dir`, delete all but the newest `keep`, return it.
    `weights`: the model's whole state dict, when `model` holds only a shard of it (FSDP2)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / checkpoint_folder_name(step)
    staging = Path(tempfile.mkdtemp(prefix=f".checkpoint-{step}-", dir=output_dir))
    try:
        _save_model(model, tokenizer, staging, weights)
        (staging / TRAINER_STATE).write_text(json.dumps({"step": step, **state}, indent=1))
        _save_tree({**tensors, "rng": rng_state()}, staging)
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
    files = (TRAINER_STATE, TRAINING_TENSORS, TRAINING_STRUCTURE)
    if not all((path / name).is_file() for name in files):
        what = "does not exist" if not path.exists() else "is not an rlab checkpoint"
        raise CheckpointError(
            f"Cannot resume from {str(path)!r}: it {what} (a checkpoint folder holds "
            f"{', '.join(files)}; one saved by an older rlab cannot be resumed, but its "
            f"weights can start a new run as its model).")
    try:
        state = json.loads((path / TRAINER_STATE).read_text())
        tensors = _load_tree(path)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"Cannot resume from {str(path)!r}: its training state is "
                              f"damaged ({exc}).") from None
    return Checkpoint(path=path, state=state, tensors=tensors)


def list_checkpoints(output_dir: Path) -> list[Path]:
    """checkpoint-<step> folders in `output_dir`, oldest step first."""
    found = [p for p in output_dir.glob("checkpoint-*")
             if p.is_dir() and checkpoint_step(p.name) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p.name))


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


def _save_tree(tree: dict[str, Any], folder: Path) -> None:
    """Write nested dicts, lists and tuples of tensors, numpy arrays and plain values as
    TRAINING_TENSORS (every tensor, by a key) and TRAINING_STRUCTURE (the rest, as JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()

    def encode(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            key = str(len(tensors))
            tensor = value.detach().cpu().contiguous()
            # safetensors refuses tensors that share memory (a tied embedding and head).
            where = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
            tensors[key] = tensor.clone() if where in seen else tensor
            seen.add(where)
            return {"$tensor": key}
        if isinstance(value, np.ndarray):
            return {"$ndarray": value.tolist(), "dtype": str(value.dtype)}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, tuple):
            return {"$tuple": [encode(v) for v in value]}
        if isinstance(value, list):
            return [encode(v) for v in value]
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: encode(v) for k, v in value.items()}
            return {"$items": [[encode(k), encode(v)] for k, v in value.items()]}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")

    structure = encode(tree)
    save_file(tensors, str(folder / TRAINING_TENSORS))
    (folder / TRAINING_STRUCTURE).write_text(json.dumps(structure))


def _load_tree(folder: Path) -> dict[str, Any]:
    """What _save_tree wrote, rebuilt: tensors on the CPU, numpy arrays, tuples."""
    tensors = load_file(str(folder / TRAINING_TENSORS))

    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "$tensor" in value:
            return tensors[value["$tensor"]]
        if "$ndarray" in value:
            return np.array(value["$ndarray"], dtype=np.dtype(value["dtype"]))
        if "$tuple" in value:
            return tuple(decode(v) for v in value["$tuple"])
        if "$items" in value:
            return {decode(k): decode(v) for k, v in value["$items"]}
        return {k: decode(v) for k, v in value.items()}

    return decode(json.loads((folder / TRAINING_STRUCTURE).read_text()))


def _save_model(model, tokenizer, folder: Path,
                weights: dict[str, torch.Tensor] | None = None) -> None:
    if hasattr(model, "merge_and_unload"):  # a LoRA policy
        model.save_pretrained(folder / ADAPTER)
        plain = copy.deepcopy(model).merge_and_unload()
    else:
        plain = model
    # a copy: save_pretrained drops the tied weights' duplicates from the dict it is given
    plain.save_pretrained(folder, safe_serialization=True,
                          state_dict=dict(weights) if weights is not None else None)
    tokenizer.save_pretrained(folder)
