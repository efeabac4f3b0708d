"""training.policies.references: what π_ref is for each reference kind, how an EMA one moves, and
the runs that use them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from training.spec.config import ConfigError, RunConfig
from training.spec.events import ListReporter
from training.policies.loading import apply_lora, build_tiny_model, load_policy
from training.rollouts.logprobs import completion_logprobs
from training.policies.references import AdaptersOff, ReferenceMismatch, make_reference
from training.loops.train import Outcome, train

EMBEDDINGS, HEAD = "model.embed_tokens.weight", "lm_head.weight"  # tied in the tiny model
Q_PROJ = "model.layers.0.self_attn.q_proj.weight"


def _config(tiny_model, **overrides) -> RunConfig:
    return RunConfig(**{"model": str(tiny_model), "beta": 0.1, **overrides})


def _policy(tiny_model):
    model, _ = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    return model


def _run(config):
    reporter = ListReporter()
    return train(config, reporter), reporter


@pytest.fixture(scope="module")
def soup_models(tmp_path_factory):
    return [build_tiny_model(tmp_path_factory.mktemp(f"soup-{seed}"), seed=seed)
            for seed in (1, 2)]


@pytest.fixture(scope="module")
def narrow_model(tiny_model, tmp_path_factory):
    """A tiny Llama of hidden size 32: the tiny model's tokenizer, another architecture."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    path = tmp_path_factory.mktemp("narrow-model")
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _sequence(tiny_model) -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = tokenizer(["Compute 2 + 3. The answer is 5."], return_tensors="pt")["input_ids"]
    return ids, torch.ones_like(ids)


def _logprobs(model, tiny_model) -> torch.Tensor:
    ids, mask = _sequence(tiny_model)
    with torch.no_grad():
        logp, _ = completion_logprobs(model, ids, mask, ids.shape[1] - 1, temperature=1.0)
    return logp  # (1, T)


def test_no_reference_without_beta_or_with_reference_none(tiny_model):
    policy = _policy(tiny_model)
    assert make_reference(_config(tiny_model, beta=0.0), policy, torch.device("cpu")) is None
    assert make_reference(_config(tiny_model, reference="none"), policy,
                          torch.device("cpu")) is None


def test_beta_with_reference_none_is_refused_by_the_config():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"beta": 0.1, "reference": "none"})
    assert "reference" in info.value.errors


def test_initial_reference_is_a_frozen_copy(tiny_model):
    policy = _policy(tiny_model)
    reference = make_reference(_config(tiny_model), policy, torch.device("cpu"))
    before = policy.state_dict()[Q_PROJ].clone()
    with torch.no_grad():
        for weight in policy.parameters():
            weight.add_(1.0)
    weights = reference.model.state_dict()
    assert torch.equal(weights[Q_PROJ], before)
    assert not any(p.requires_grad for p in reference.model.parameters())
    reference.after_step(policy)  # only an EMA reference follows the policy
    assert torch.equal(reference.model.state_dict()[Q_PROJ], before)
    assert reference.state_dict() is None  # nothing for a checkpoint to keep


def test_ema_moves_the_reference_by_one_minus_eta_of_the_gap(tiny_model):
    policy = _policy(tiny_model)
    reference = make_reference(_config(tiny_model, reference="ema", reference_ema_rate=0.75),
                               policy, torch.device("cpu"))
    old = {name: w.clone() for name, w in reference.model.state_dict().items()}
    with torch.no_grad():
        policy.get_parameter(Q_PROJ)[0, 0] += 2.0
        policy.get_parameter(EMBEDDINGS)[7, 3] += 4.0  # the LM head with it: they are tied
    reference.after_step(policy)
    moved = reference.model.state_dict()
    # η·ref + (1 − η)·π = ref + (1 − η)·(π − ref): a gap of 2 closes by 0.5, of 4 by 1
    assert moved[Q_PROJ][0, 0].item() == pytest.approx(old[Q_PROJ][0, 0].item() + 0.5, abs=1e-6)
    # moved once, not again under the head's name (which would close 1 − η² of the gap)
    assert moved[EMBEDDINGS][7, 3].item() == pytest.approx(old[EMBEDDINGS][7, 3].item() + 1.0,
                                                           abs=1e-6)
    assert moved[HEAD][7, 3].item() == moved[EMBEDDINGS][7, 3].item()
    assert torch.equal(moved[Q_PROJ][1:], old[Q_PROJ][1:])  # no gap, no move


def test_ema_reference_state_restores_into_a_fresh_one(tiny_model):
    config = _config(tiny_model, reference="ema", reference_ema_rate=0.5)
    policy = _policy(tiny_model)
    reference = make_reference(config, policy, torch.device("cpu"))
    with torch.no_grad():
        policy.get_parameter(Q_PROJ).add_(1.0)
    reference.after_step(policy)
    restored = make_reference(config, _policy(tiny_model), torch.device("cpu"))
    restored.load_state_dict(reference.state_dict())
    assert torch.equal(restored.model.state_dict()[Q_PROJ], reference.model.state_dict()[Q_PROJ])


def test_ema_of_a_lora_policy_follows_its_merged_weights(tiny_model):
    policy = apply_lora(_policy(tiny_model), rank=2, alpha=4.0)
    reference = make_reference(_config(tiny_model, reference="ema", reference_ema_rate=0.5,
                                       lora_rank=2), policy, torch.device("cpu"))
    assert set(reference.model.state_dict()) == set(_policy(tiny_model).state_dict())
    old = reference.model.state_dict()[Q_PROJ].clone()
    layer = policy.base_model.model.model.layers[0].self_attn.q_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.fill_(0.1)
    delta = layer.get_delta_weight("default")  # (α/r)·B·A, now not 0
    reference.after_step(policy)
    assert torch.allclose(reference.model.state_dict()[Q_PROJ], old + 0.5 * delta, atol=1e-6)


def test_soup_is_the_weight_average_of_its_two_models(tiny_model, soup_models):
    first, second = soup_models
    config = _config(tiny_model, reference="soup", reference_soup=f"{first}, {second}")
    reference = make_reference(config, _policy(tiny_model), torch.device("cpu"))
    a, b = (_policy(path).state_dict() for path in soup_models)
    soup = reference.model.state_dict()
    assert set(soup) == set(a)
    for name, weight in soup.items():
        assert torch.allclose(weight, (a[name] + b[name]) / 2, atol=1e-7), name
    assert not any(p.requires_grad for p in reference.model.parameters())


def test_soup_of_two_architectures_is_refused(tiny_model, soup_models, narrow_model):
    config = _config(tiny_model, reference="soup",
                     reference_soup=f"{soup_models[0]},{narrow_model}")
    with pytest.raises(ReferenceMismatch) as info:
        make_reference(config, _policy(tiny_model), torch.device("cpu"))
    assert str(soup_models[0]) in str(info.value) and str(narrow_model) in str(info.value)
    assert "different architectures" in str(info.value)


def test_soup_of_another_architecture_than_the_policy_is_refused(tiny_model, narrow_model):
    config = _config(tiny_model, reference="soup",
                     reference_soup=f"{narrow_model},{narrow_model}")
    with pytest.raises(ReferenceMismatch, match="policy's architecture"):
        make_reference(config, _policy(tiny_model), torch.device("cpu"))


def test_a_run_with_a_mismatched_soup_fails_with_the_reason(tiny_config, soup_models,
                                                            narrow_model):
    config = dataclasses.replace(tiny_config, beta=0.1, reference="soup",
                                 reference_soup=f"{soup_models[0]},{narrow_model}")
    outcome, reporter = _run(config)
    assert outcome is Outcome.FAILED
    [error] = reporter.of_kind("error")
    assert "different architectures" in error["message"] and str(narrow_model) in error["message"]
    assert not reporter.of_kind("metrics")


def test_lora_initial_reference_is_the_policy_with_its_adapters_off(tiny_model):
    policy = apply_lora(_policy(tiny_model), rank=2, alpha=4.0)
    reference = make_reference(_config(tiny_model, lora_rank=2), policy, torch.device("cpu"))
    assert isinstance(reference.model, AdaptersOff)
    with torch.no_grad():
        for name, weight in policy.named_parameters():
            if "lora_B" in name:
                weight.fill_(0.05)
    base = _logprobs(_policy(tiny_model), tiny_model)
    assert torch.allclose(_logprobs(reference.model, tiny_model), base, atol=1e-5)
    assert not torch.allclose(_logprobs(policy, tiny_model), base, atol=1e-3)  # adapters on


def test_initial_reference_stays_put_while_the_policy_moves(tiny_config, length_rewarded):
    config = dataclasses.replace(tiny_config, beta=0.1, learning_rate=1e-2)
    outcome, reporter = _run(config)
    first, second = (m["values"] for m in reporter.of_kind("metrics"))
    assert outcome is Outcome.COMPLETED
    assert first["optim/grad_norm"] > 0
    assert first["kl/mean"] == pytest.approx(0.0, abs=1e-7)  # π_θ = π_ref before any update
    assert second["kl/mean"] > 1e-4  # the policy moved and the reference did not follow
    assert first["kl/beta"] == second["kl/beta"] == 0.1


def test_reference_none_reports_no_kl(tiny_config):
    outcome, reporter = _run(dataclasses.replace(tiny_config, max_steps=1, reference="none"))
    values = reporter.of_kind("metrics")[0]["values"]
    assert outcome is Outcome.COMPLETED
    assert not [key for key in values if key.startswith("kl/")]
