"""training.models: what a model reference resolves to, and the errors a user can fix."""

import huggingface_hub.constants
import pytest
import torch

from training.models import ModelNotFound, load_policy, model_cache_dir, resolve_model


def test_missing_folder_says_what_was_looked_for_and_what_to_give(tmp_path):
    with pytest.raises(ModelNotFound) as info:
        resolve_model(str(tmp_path / "nowhere"))
    message = str(info.value)
    assert "nowhere" in message and "does not exist" in message
    assert "Hugging Face format" in message and "builtin:smollm2-135m-instruct" in message


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFound, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_unknown_builtin_lists_the_known_ones():
    with pytest.raises(ModelNotFound, match="builtin:smollm2-135m-instruct"):
        resolve_model("builtin:gpt-17")


def test_hub_ids_pass_through():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_hub_id_that_cannot_be_fetched_offline_is_model_not_found(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFound, match="local folder"):
        load_policy("rlab-tests/no-such-model", dtype=torch.float32, device="cpu")


def test_model_cache_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RLAB_MODEL_CACHE", str(tmp_path))
    assert model_cache_dir() == tmp_path


def test_builtin_model_resolves_to_a_converted_folder():
    folder = resolve_model("builtin:smollm2-135m-instruct")
    assert (folder / "config.json").is_file()
    assert "quantization_config" not in (folder / "config.json").read_text()


def test_tiny_model_loads_ready_for_batched_generation(tiny_model):
    model, tokenizer = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert tokenizer.chat_template
