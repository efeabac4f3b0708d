"""Model references (training.spec.model_refs), what they resolve to (training.policies.loading),
and the errors a user can fix."""

import huggingface_hub.constants
import pytest
import torch

from training.spec.config import ConfigError, RunConfig
from training.spec.model_refs import RefKind, parse_model_ref
from training.policies.loading import ModelNotFound, load_policy, model_cache_dir, resolve_model


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


@pytest.mark.parametrize("text", ["/srv/rlab/runs/run-3-20261201-101010/checkpoint-30",
                                  "../other-team", "~/models/x", "./here", "C:\\models\\x"])
def test_a_config_from_the_web_app_refuses_paths(text):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"model": text})
    assert "a path on the worker is not accepted" in info.value.errors["model"]
    assert "checkpoint:<id>" in info.value.errors["model"]


@pytest.mark.parametrize("field", ["reward_models", "reference_soup"])
def test_model_lists_refuse_a_path_among_their_items(field):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({field: "builtin:smollm2-135m-instruct, /etc/passwd"})
    assert "path" in info.value.errors[field]


def test_resume_from_takes_only_a_checkpoint():
    assert RunConfig.from_dict({"resume_from": "checkpoint:12"}).resume_from == "checkpoint:12"
    with pytest.raises(ConfigError, match="checkpoint:<id>"):
        RunConfig.from_dict({"resume_from": "builtin:smollm2-135m-instruct"})


def test_a_config_whose_author_owns_the_machine_may_give_paths(tmp_path):
    config = RunConfig.from_dict({"model": str(tmp_path), "resume_from": str(tmp_path)},
                                 paths=True)
    assert config.model == str(tmp_path)


@pytest.mark.parametrize("text, kind", [
    ("builtin:smollm2-135m-instruct", RefKind.BUILTIN), ("checkpoint:7", RefKind.CHECKPOINT),
    ("local:qwen/qwen2.5-0.5b", RefKind.LOCAL), ("gpt2", RefKind.HUB),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", RefKind.HUB)])
def test_each_kind_of_reference_is_recognised(text, kind):
    assert parse_model_ref(text).kind == kind


@pytest.mark.parametrize("text", ["checkpoint:", "checkpoint:-1", "checkpoint:0", "checkpoint:٣",
                                  "checkpoint:99999999999999999999", "local:", "local:a/b/c",
                                  "local:a/../b", "local:.hidden", "org/na..me", "org--x/y",
                                  "a/b/c", "name with spaces", "-x"])
def test_malformed_references_are_refused(text):
    with pytest.raises(ValueError):
        parse_model_ref(text)


@pytest.mark.parametrize("ref", ["checkpoint:3", "local:mine"])
def test_references_of_an_installation_do_not_load_outside_it(ref):
    with pytest.raises(ModelNotFound, match="launch the run from rlab"):
        resolve_model(ref)
