"""The transformers backend runs each prompt once for its group and samples what `generate`
samples when it expands the prompt into one row per completion."""

import dataclasses
import random

import torch

from training.policies.loading import load_policy
from training.rollouts.generation import TransformersBackend, eos_token_ids, prompt_texts
from training.spec.config import RunConfig
from training.spec.tasks import get_task


def test_a_groups_prompt_runs_once_and_samples_what_generate_samples(tiny_model):
    model, tokenizer = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    config = RunConfig(model=str(tiny_model), rollout_backend="transformers", group_size=4,
                       max_new_tokens=8, temperature=1.0)
    backend = TransformersBackend(model, tokenizer, config)
    # prompts of different lengths, so the shorter is left-padded under the longer
    first, second = get_task("arithmetic").sample(random.Random(0), 2)
    examples = [first, dataclasses.replace(
        second, prompt=second.prompt + " Think step by step before you answer.")]
    prompt_calls = []
    model.register_forward_hook(lambda module, args, kwargs, output: prompt_calls.append(
        kwargs["input_ids"].shape), with_kwargs=True)

    torch.manual_seed(7)
    rollouts = backend.generate(examples, 4)
    prompts = tokenizer(prompt_texts(tokenizer, examples), return_tensors="pt", padding=True,
                        add_special_tokens=False)
    torch.manual_seed(7)
    expected = model.generate(**prompts, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                              repetition_penalty=1.0, max_new_tokens=8, num_return_sequences=4,
                              pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=eos_token_ids(model, tokenizer))

    prompt_length = prompts["input_ids"].shape[1]
    assert prompt_calls[0] == (2, prompt_length - 1)  # each prompt once, not once per row
    assert all(shape[1] == 1 for shape in prompt_calls[1:8])  # then one token at a time
    width = rollouts.completion_mask.shape[1]
    completions = expected[:, prompt_length:prompt_length + width]
    assert torch.equal(rollouts.input_ids[:, prompt_length:] * rollouts.completion_mask,
                       completions * rollouts.completion_mask)
