"""Rollout backends: what turns a batch of prompts into G sampled completions each.

Every backend returns the same `Rollouts`, laid out for the trainer's update (left-padded prompt,
then completion), so the update never knows which one sampled. The log-probs used in the loss
are always recomputed by the training model; a backend may add its own sampling log-probs, from
which the trainer measures the engine-vs-trainer mismatch.

    transformers  `generate` on the training model itself: nothing to sync.
    vllm          a vLLM engine in the training process (training.rollouts.vllm_backend); the
    trainer
                  pushes new weights into it after every optimiser step.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from training.spec.config import RunConfig
from training.spec.tasks import Example


@dataclass
class Rollouts:
    """G completions for each of B prompts, group by group: row i belongs to prompt i // G."""

    input_ids: torch.Tensor  # (N, P + T) left-padded prompt, then completion; N = B*G
    attention_mask: torch.Tensor  # (N, P + T) 0 on prompt padding and after the first EOS
    completion_mask: torch.Tensor  # (N, T) 1 on completion tokens up to and including EOS
    lengths: torch.Tensor  # (N,) completion tokens, EOS included
    truncated: torch.Tensor  # (N,) bool: hit max_new_tokens before EOS
    texts: list[str]  # decoded completions, special tokens dropped
    sampled_logprobs: torch.Tensor | None = None  # (N, T) the engine's, where it reports them

    def select(self, rows: torch.Tensor) -> Rollouts:
        """The rollouts of `rows` (indices into N), in that order."""
        kept = rows.cpu()
        return Rollouts(
            input_ids=self.input_ids[rows], attention_mask=self.attention_mask[rows],
            completion_mask=self.completion_mask[rows], lengths=self.lengths[kept],
            truncated=self.truncated[kept], texts=[self.texts[i] for i in kept.tolist()],
            sampled_logprobs=None if self.sampled_logprobs is None
            else self.sampled_logprobs[rows])


def concat_rollouts(parts: list[Rollouts], pad_token_id: int) -> Rollouts:
    """Several Rollouts as one, re-padded: prompts to the left, completions to the right."""
    prompt_width = max(r.input_ids.shape[1] - r.completion_mask.shape[1] for r in parts)
    completion_width = max(r.completion_mask.shape[1] for r in parts)

    def padded(r: Rollouts, x: torch.Tensor, value: float, has_prompt: bool) -> torch.Tensor:
        width = r.completion_mask.shape[1]
        left = prompt_width - (r.input_ids.shape[1] - width) if has_prompt else 0
        return torch.nn.functional.pad(x, (left, completion_width - width), value=value)

    sampled = [r.sampled_logprobs for r in parts]
    return Rollouts(
        input_ids=torch.cat([padded(r, r.input_ids, pad_token_id, True) for r in parts]),
        attention_mask=torch.cat([padded(r, r.attention_mask, 0, True) for r in parts]),
        completion_mask=torch.cat([padded(r, r.completion_mask, 0, False) for r in parts]),
        lengths=torch.cat([r.lengths for r in parts]),
        truncated=torch.cat([r.truncated for r in parts]),
        texts=[t for r in parts for t in r.texts],
        sampled_logprobs=None if any(x is None for x in sampled)
        else torch.cat([padded(r, x, 0.0, False) for r, x in zip(parts, sampled)]))


@dataclass(frozen=True)
class Sampling:
    """How a generate call samples: the run's settings, or an evaluation's."""

    temperature: float
    top_p: float
    max_new_tokens: int

    @classmethod
    def of(cls, config: RunConfig) -> Sampling:
        return cls(config.temperature, config.top_p, config.max_new_tokens)


class RolloutBackend(Protocol):
    name: str

    def generate(self, examples: list[Example], group_size: int,
                 sampling: Sampling | None = None) -> Rollouts:
        """group_size completions of each example, group by group; `sampling` overrides the
        run's temperature, top-p and length for this call."""

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the next generate sample from `model`'s current weights."""

    def close(self) -> None:
        """Free the backend's memory and processes."""


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def backend_name(config: RunConfig) -> str:
    """The backend `config` asks for, 'auto' resolved: vLLM when it is installed, except on
    several devices, where each process generates with transformers (training.parallel)."""
    if config.rollout_backend == "auto":
        return "vllm" if vllm_installed() and config.devices == 1 else "transformers"
    return config.rollout_backend


def prompt_texts(tokenizer, examples: list[Example] | list[Any]) -> list[str]:
    """Each example's (or anything with a `.prompt`'s) user message in the model's chat
    template, ready for the reply."""
    conversations = [[{"role": "user", "content": ex.prompt}] for ex in examples]
    return tokenizer.apply_chat_template(conversations, add_generation_prompt=True,
                                         tokenize=False)


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every token that ends a turn: the tokenizer's EOS and the model's (some list several)."""
    ids = {tokenizer.eos_token_id}
    configured = model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def assemble(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
             eos_ids: list[int], tokenizer, group_size: int) -> Rollouts:
    """Rollouts from left-padded prompts (B, P) and their completions (B*G, T), which may run
    past their EOS (padding, or tokens generated after it): those are masked out."""
    eos = torch.tensor(eos_ids, device=completion_ids.device)
    is_eos = torch.isin(completion_ids, eos)  # (N, T)
    has_eos = is_eos.any(dim=1)  # (N,)
    width = completion_ids.shape[1]
    lengths = torch.where(has_eos, is_eos.int().argmax(dim=1) + 1, width)  # (N,)
    positions = torch.arange(width, device=completion_ids.device)
    completion_mask = (positions[None, :] < lengths[:, None]).long()  # (N, T)
    input_ids = torch.cat([prompt_ids.repeat_interleave(group_size, dim=0), completion_ids], 1)
    attention_mask = torch.cat([prompt_mask.repeat_interleave(group_size, dim=0),
                                completion_mask], dim=1)
    texts = tokenizer.batch_decode(
        [ids[:n] for ids, n in zip(completion_ids, lengths.tolist(), strict=True)],
        skip_special_tokens=True)
    return Rollouts(input_ids=input_ids, attention_mask=attention_mask,
                    completion_mask=completion_mask, lengths=lengths.cpu(),
                    truncated=~has_eos.cpu(), texts=texts)


class TransformersBackend:
    """Samples with `model.generate` on the training model: always in sync, slowest."""

    name = "transformers"

    def __init__(self, model, tokenizer, config: RunConfig,
                 should_stop: Callable[[], bool] = lambda: False):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.stopping = StoppingCriteriaList([_StopRequested(should_stop)])

    def generate(self, examples: list[Example], group_size: int,
                 sampling: Sampling | None = None) -> Rollouts:
        # The template already holds the special tokens; adding them again would double the BOS.
        prompts = self.tokenizer(prompt_texts(self.tokenizer, examples), return_tensors="pt",
                                 padding=True, add_special_tokens=False).to(self.model.device)
        config = self.config
        sampling = sampling or Sampling.of(config)
        self.model.eval()
        with torch.no_grad(), torch.autocast(device_type=self.model.device.type,
                                             dtype=torch.bfloat16,
                                             enabled=config.dtype == "bfloat16"):
            rows = {key: prompts[key].repeat_interleave(group_size, dim=0)
                    for key in ("input_ids", "attention_mask")}  # (N, P)
            # top_k=0 and repetition_penalty=1 override model defaults (top_k is 50 otherwise),
            # so tokens are drawn from the same distribution that the update recomputes.
            output = self.model.generate(
                **rows, past_key_values=self._prompt_cache(prompts, group_size),
                do_sample=True, temperature=sampling.temperature,
                top_p=sampling.top_p, top_k=0, repetition_penalty=1.0,
                max_new_tokens=sampling.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.eos_ids, stopping_criteria=self.stopping)  # (N, P + T)
        prompt_length = prompts["input_ids"].shape[1]
        return assemble(prompts["input_ids"], prompts["attention_mask"],
                        output[:, prompt_length:], self.eos_ids, self.tokenizer, group_size)

    def _prompt_cache(self, prompts, group_size: int):
        """The key/value cache of each prompt but its last token, run once and repeated for
        its group's rows, for `generate` to go on from (it would otherwise run every prompt
        once per completion); None for a one-token prompt."""
        ids, mask = prompts["input_ids"][:, :-1], prompts["attention_mask"][:, :-1]  # (m, P − 1)
        if ids.shape[1] == 0:
            return None
        cache = self.model(input_ids=ids, attention_mask=mask,
                           position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0),
                           use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(group_size)
        return cache

    def sync_weights(self, model: torch.nn.Module) -> None:
        pass  # generates with the training model itself

    def close(self) -> None:
        pass


def generate_by_group(backend: RolloutBackend, examples: list[Example], group_size: int,
                      seeds: list[int], pad_token_id: int) -> Rollouts:
    """group_size completions of each example, each group sampled on its own after seeding the
    generators with its seed: a group's completions then do not depend on which other prompts
    share its process or its batch, so a run split over any number of processes samples the
    same ones (training.parallel)."""
    parts = []
    for example, seed in zip(examples, seeds, strict=True):
        torch.manual_seed(seed)  # seeds every device's generator, CUDA's included
        parts.append(backend.generate([example], group_size))
    return concat_rollouts(parts, pad_token_id) if len(parts) > 1 else parts[0]


def make_backend(config: RunConfig, model, tokenizer,
                 should_stop: Callable[[], bool] = lambda: False,
                 warn: Callable[[str], None] = lambda message: None) -> RolloutBackend:
    """The run's rollout backend. A vLLM engine that cannot start raises BackendUnavailable
    when the run asked for vLLM; under 'auto' the run goes on with transformers and `warn`
    says why."""
    if backend_name(config) == "vllm":
        from training.rollouts.vllm_backend import VLLMBackend

        try:
            return VLLMBackend(model, tokenizer, config, should_stop)
        except BackendUnavailable as exc:
            if config.rollout_backend == "vllm":
                raise
            warn(f"rollouts by transformers, since vLLM cannot run this model here: {exc}")
    return TransformersBackend(model, tokenizer, config, should_stop)


class BackendUnavailable(RuntimeError):
    """The chosen backend cannot run on this worker; the message says what to change."""


class _StopRequested(StoppingCriteria):
    """Ends generation early when the run is asked to stop, instead of finishing the batch."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.should_stop(), dtype=torch.bool,
                          device=input_ids.device)
