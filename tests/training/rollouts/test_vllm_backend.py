"""training.rollouts.vllm_backend: rollouts from an in-process vLLM engine, laid out like the
transformers backend's, with log-probs that agree with the trainer's and follow every weight sync.

One engine serves the whole file (it takes 10-30 s to start on 2 CPU cores); a test that pushes
other weights into it pushes the policy's back before it ends.
"""

import copy
import threading

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from training.spec.config import RunConfig
from training.rollouts.generation import BackendUnavailable
from training.policies.loading import apply_lora, load_policy
from training.spec.tasks import Example
from training.rollouts.logprobs import completion_logprobs
from training.rollouts.vllm_backend import VLLMBackend

pytest.importorskip("vllm")

TEMPERATURE = 0.7
# fp32 engine vs fp32 trainer: different kernels (vLLM's CPU attention and GEMMs, a 49k-way
# log-softmax) put the per-token log-probs, of about -10 each, up to ~1e-4 apart (measured:
# max 8.5e-5, mean 2e-6 over 70 tokens). An engine that still has the previous weights is off by
# about 1 on average after one optimiser step, so the bound separates the two by 1000×.
TOLERANCE = 1e-3
EXAMPLES = [Example(prompt_id=f"{a}+{a + 2}", prompt=f"What is {a} + {a + 2}?", columns={})
            for a in range(3)]
# Prompts longer than a KV-cache block (a few hundred tokens): the engine caches their keys and
# values and would reuse them after a weight sync unless the sync clears that cache.
LONG_EXAMPLES = [Example(prompt_id=ex.prompt_id, prompt="Think step by step. " * 60 + ex.prompt,
                         columns={}) for ex in EXAMPLES]
G = 4


def save_tiny_policy(tiny_model, path, heads: int):
    """The tiny model with `heads` attention heads and a random EOS embedding, so that
    completions end at varied lengths (the tiny model's EOS embedding is zero)."""
    config = AutoConfig.from_pretrained(tiny_model)
    config.num_attention_heads = config.num_key_value_heads = heads
    config.head_dim = config.hidden_size // heads
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.get_input_embeddings().weight[tokenizer.eos_token_id] = torch.randn(
            config.hidden_size, generator=torch.Generator().manual_seed(2))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def policy_dir(tiny_model, tmp_path_factory):
    """The tiny model's 2 heads of 32 (vLLM's CPU attention has no kernel for heads of 16), with
    a random EOS embedding."""
    return save_tiny_policy(tiny_model, tmp_path_factory.mktemp("vllm-policy"), heads=2)


@pytest.fixture(scope="module")
def policy(policy_dir):
    return load_policy(str(policy_dir), dtype=torch.float32, device="cpu")


@pytest.fixture(scope="module")
def stop_requested():
    return threading.Event()


@pytest.fixture(scope="module")
def backend(policy_dir, policy, stop_requested):
    model, tokenizer = policy
    config = RunConfig(model=str(policy_dir), max_new_tokens=12, temperature=TEMPERATURE,
                       group_size=G)
    backend = VLLMBackend(model, tokenizer, config, should_stop=stop_requested.is_set)
    yield backend
    backend.close()


def recomputed(model, rollouts) -> torch.Tensor:
    """The trainer's log-probs of the sampled tokens, (N, T)."""
    with torch.no_grad():
        logp, _ = completion_logprobs(model, rollouts.input_ids, rollouts.attention_mask,
                                      rollouts.completion_mask.shape[1], TEMPERATURE)
    return logp


def largest_gap(rollouts, logp: torch.Tensor) -> float:
    """max |engine − trainer| over the completion tokens."""
    mask = rollouts.completion_mask.bool()
    return (rollouts.sampled_logprobs - logp)[mask].abs().max().item()


def test_rollouts_are_laid_out_like_the_transformers_backend(backend, policy):
    _, tokenizer = policy
    torch.manual_seed(0)  # a draw where some completions end and some are cut at 12 tokens
    rollouts = backend.generate(EXAMPLES, G)
    prompts = tokenizer(tokenizer.apply_chat_template(
        [[{"role": "user", "content": ex.prompt}] for ex in EXAMPLES],
        add_generation_prompt=True, tokenize=False), return_tensors="pt", padding=True,
        add_special_tokens=False)
    n, prompt_width = 3 * G, prompts["input_ids"].shape[1]
    width = rollouts.completion_mask.shape[1]
    assert rollouts.input_ids.shape == rollouts.attention_mask.shape == (n, prompt_width + width)
    assert rollouts.sampled_logprobs.shape == (n, width)
    assert torch.equal(rollouts.input_ids[:, :prompt_width],
                       prompts["input_ids"].repeat_interleave(G, dim=0))
    assert torch.equal(rollouts.attention_mask[:, :prompt_width],
                       prompts["attention_mask"].repeat_interleave(G, dim=0))
    assert torch.equal(rollouts.attention_mask[:, prompt_width:], rollouts.completion_mask)

    completions = rollouts.input_ids[:, prompt_width:]
    assert width == int(rollouts.lengths.max()) <= 12
    assert rollouts.truncated.any() and not rollouts.truncated.all()
    for i in range(n):
        length = int(rollouts.lengths[i])
        assert rollouts.completion_mask[i].tolist() == [1] * length + [0] * (width - length)
        ends_in_eos = completions[i, length - 1].item() == tokenizer.eos_token_id
        assert bool(rollouts.truncated[i]) == (not ends_in_eos)
        assert ends_in_eos or length == 12
        assert (completions[i, length:] == tokenizer.pad_token_id).all()
        assert (rollouts.sampled_logprobs[i, :length] < 0).all()
        assert rollouts.texts[i] == tokenizer.decode(completions[i, :length],
                                                     skip_special_tokens=True)


def test_sampled_logprobs_agree_with_the_trainers(backend, policy):
    model, _ = policy
    rollouts = backend.generate(EXAMPLES, G)
    assert largest_gap(rollouts, recomputed(model, rollouts)) < TOLERANCE


def test_after_an_optimiser_step_and_a_sync_the_engine_samples_from_the_new_weights(
        backend, policy):
    model, _ = policy
    rollouts = backend.generate(LONG_EXAMPLES, G)
    stepped = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(stepped.parameters(), lr=0.02)
    logp, _ = completion_logprobs(stepped, rollouts.input_ids, rollouts.attention_mask,
                                  rollouts.completion_mask.shape[1], TEMPERATURE)
    (-(logp * rollouts.completion_mask).sum()).backward()
    optimizer.step()
    try:
        backend.sync_weights(stepped)
        after = backend.generate(LONG_EXAMPLES, G)
        assert largest_gap(after, recomputed(stepped, after)) < TOLERANCE
        assert largest_gap(after, recomputed(model, after)) > 100 * TOLERANCE
    finally:
        backend.sync_weights(model)
    again = backend.generate(LONG_EXAMPLES, G)
    assert largest_gap(again, recomputed(model, again)) < TOLERANCE


def test_a_lora_policy_is_pushed_with_its_adapters_merged(backend, policy):
    model, _ = policy
    lora = apply_lora(copy.deepcopy(model), rank=4, alpha=8.0)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:  # zero at the start, which would leave the weights unchanged
                parameter.normal_(0.0, 0.2, generator=generator)
    try:
        backend.sync_weights(lora)
        rollouts = backend.generate(EXAMPLES, G)
        assert largest_gap(rollouts, recomputed(lora, rollouts)) < TOLERANCE
        assert largest_gap(rollouts, recomputed(model, rollouts)) > 100 * TOLERANCE
    finally:
        backend.sync_weights(model)
    assert not any(lora.base_model.model.model.layers[0].self_attn.q_proj.merged_adapters)


def test_the_same_seed_gives_the_same_completions(backend):
    # The engine samples with the process's torch generator, which LLM(seed=...) seeds at start.
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(backend.generate(EXAMPLES, G))
    assert torch.equal(runs[0].input_ids, runs[1].input_ids)
    assert torch.equal(runs[0].sampled_logprobs, runs[1].sampled_logprobs)
    assert not torch.equal(runs[0].input_ids, runs[2].input_ids)


def test_a_stop_request_ends_every_completion_at_the_same_early_step(backend, stop_requested):
    stop_requested.set()
    try:
        rollouts = backend.generate(EXAMPLES, G)
    finally:
        stop_requested.clear()
    width = rollouts.completion_mask.shape[1]
    assert width < 12
    assert ((rollouts.lengths == width) | ~rollouts.truncated).all()
    assert rollouts.truncated.any()
    assert len(backend.generate(EXAMPLES[:1], G).texts) == G  # the engine serves the next batch


def test_a_broken_model_folder_says_to_use_the_transformers_backend(policy_dir, policy, tmp_path):
    model, tokenizer = policy
    (tmp_path / "config.json").write_text((policy_dir / "config.json").read_text())
    config = RunConfig(model=str(tmp_path), max_new_tokens=4)
    with pytest.raises(BackendUnavailable) as info:
        VLLMBackend(model, tokenizer, config)
    message = str(info.value)
    assert "vLLM could not start" in message and str(tmp_path) in message
    assert "'transformers'" in message


def test_a_model_the_engine_has_no_kernel_for_fails_at_start_not_at_the_first_step(
        tiny_model, policy, tmp_path):
    model, tokenizer = policy
    path = save_tiny_policy(tiny_model, tmp_path, heads=4)  # heads of 16
    with pytest.raises(BackendUnavailable) as info:
        VLLMBackend(model, tokenizer, RunConfig(model=str(path), max_new_tokens=4))
    assert "head_dim=16" in str(info.value) and "'transformers'" in str(info.value)
