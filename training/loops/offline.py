"""The DPO training loop: offline, on a preference dataset's pairs; nothing is generated.

Each step takes the next `prompts_per_step` pairs of a shuffled walk through the dataset, scores
both replies of every pair under the policy and the frozen reference (the initial policy; with
LoRA, the policy with its adapters off), and takes one optimiser step on the loss of
training.algorithms.dpo, micro-batched with gradients accumulated. A pair is laid out like a
group of two rollouts of its prompt, the chosen reply first, so the micro-batching and log-prob
code of the policy update apply as they are. Checkpoints (training.checkpoints) let a run resume
exactly.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from training import checkpoints
from training.algorithms import engine_for
from training.algorithms.dpo import DPO, PairLogps
from training.spec.config import RunConfig
from training.spec.events import Reporter, RolloutRecord
from training.rollouts.generation import Rollouts, prompt_texts
from training.policies.loading import ModelNotFound, apply_lora, load_adapter, load_policy
from training.ops import masked_sum
from training.rollouts.logprobs import autocast, completion_logprobs, micro_batch
from training.spec.preference_dataset import PairSampler, PreferencePair, load_preference_dataset
from training.spec.prompt_dataset import DatasetFileError
from training.policies.references import AdaptersOff, frozen
from training.loops.setup import (
    Outcome,
    load_run_policy,
    make_optimizer,
    peak_memory,
    resolve_device,
    run_steps,
    save_checkpoint,
)


class OfflineTraining:
    """One DPO run's policy, reference, optimiser and pair sampler, and its step loop."""

    # Problems a user can fix in the run's settings: reported as they are, not as a crash.
    SETUP_ERRORS = (ModelNotFound, DatasetFileError, checkpoints.CheckpointError)

    def __init__(self, config: RunConfig, reporter: Reporter, should_stop: Callable[[], bool],
                 output_dir: Path | None):
        self.config, self.reporter, self.should_stop = config, reporter, should_stop
        self.output_dir = output_dir
        self.device = torch.device(resolve_device(config.device))
        self.pairs = load_preference_dataset(config.dataset)
        resumed = checkpoints.load(config.resume_from) if config.resume_from else None

        loading = time.perf_counter()
        self.model, self.tokenizer = load_run_policy(config, resumed, self.device)
        if config.lora_rank:
            self.model = apply_lora(self.model, config.lora_rank, config.lora_alpha)
            if resumed is not None:
                load_adapter(self.model, resumed.adapter)
            self.reference = AdaptersOff(self.model)
        elif resumed is not None:  # the initial policy, not the checkpoint's
            initial, _ = load_policy(config.model, dtype=torch.float32, device=self.device)
            self.reference = frozen(initial)
        else:
            self.reference = frozen(copy.deepcopy(self.model))
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        total = sum(p.numel() for p in self.model.parameters())
        reporter.log(f"loaded {config.model} ({total / 1e6:.0f}M parameters, "
                     f"{sum(p.numel() for p in trainable) / 1e6:.2f}M trained, {config.dtype}) "
                     f"on {self.device} in {time.perf_counter() - loading:.1f} s")
        self.algorithm: DPO = engine_for(config.algorithm)(config)
        reporter.log(f"{len(self.pairs)} preference pairs, {self.algorithm.describe()}")

        self.optimizer, self.scheduler = make_optimizer([{"params": trainable}], config, 1)
        self.sampler = PairSampler(self.pairs, seed=config.seed)
        self.first_step = 1
        if resumed is not None:
            self._restore(resumed)

    def close(self) -> None:
        pass  # it holds nothing beyond the process's memory

    def loop(self) -> Outcome:
        return run_steps(self.config, self.reporter, self.should_stop, device=self.device,
                         first_step=self.first_step, step=self.step,
                         save_checkpoint=self.save_checkpoint if self.output_dir else None)

    def step(self, step: int) -> dict[str, float] | None:
        """One training step, reported; its metrics, or None if stopped part-way."""
        config = self.config
        step_start = time.perf_counter()
        pairs = self.sampler.sample(config.prompts_per_step)
        batch = encode_pairs(self.tokenizer, pairs, config.max_new_tokens, self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        update_start = time.perf_counter()
        update = _update(self.model, self.reference, self.optimizer, batch, self.algorithm, config,
                         self.should_stop)
        if update is None:
            return None
        metrics, rewards = update
        self.scheduler.step()
        update_s = time.perf_counter() - update_start
        step_s = time.perf_counter() - step_start
        metrics = {
            **metrics,
            "completion/truncated_fraction": batch.truncated.float().mean().item(),
            "optim/lr": lr,
            "time/update_s": update_s,
            "time/step_s": step_s,
            "perf/tokens_per_s": batch.lengths.sum().item() / step_s,
            **peak_memory(self.device),
        }
        self.reporter.metrics(step, metrics)
        if config.rollouts_logged_per_step:
            self.reporter.rollouts(step, _rollout_items(pairs, batch, rewards, config))
        self.reporter.progress(step, config.max_steps)
        if step == self.first_step and batch.truncated.any():
            self.reporter.log(
                f"{int(batch.truncated.sum())} of {len(batch.texts)} replies in step {step} are "
                f"longer than max new tokens ({config.max_new_tokens}) and were cut; raise it to "
                f"train on whole replies", level="warning")
        return metrics

    def save_checkpoint(self, step: int, final: bool) -> None:
        save_checkpoint(self.output_dir, step, final=final, model=self.model,
                        tokenizer=self.tokenizer, state={"sampler": self.sampler.state_dict()},
                        tensors={"optimizer": self.optimizer.state_dict(),
                                 "scheduler": self.scheduler.state_dict()},
                        config=self.config, reporter=self.reporter)

    def _restore(self, resumed: checkpoints.Checkpoint) -> None:
        """Continue after the checkpoint's step, with its optimiser, schedule, sampler and RNG
        state."""
        algorithm = resumed.state["config"].get("algorithm")
        if algorithm != "dpo":
            raise checkpoints.CheckpointError(
                f"The checkpoint is from a {algorithm} run, and a DPO run resumes only from a "
                f"DPO checkpoint. To start DPO from its weights, give the checkpoint as the "
                f"model.")
        if resumed.step >= self.config.max_steps:
            raise checkpoints.CheckpointError(
                f"The checkpoint is at step {resumed.step}; raise max steps above it to train on.")
        sampler = resumed.state["sampler"]
        if len(sampler["order"]) != len(self.pairs):
            raise checkpoints.CheckpointError(
                f"The checkpoint's run trained on {len(sampler['order'])} preference pairs and "
                f"this dataset has {len(self.pairs)}: resume with the dataset it started with.")
        self.sampler.load_state_dict(sampler)
        self.optimizer.load_state_dict(resumed.tensors["optimizer"])
        self.scheduler.load_state_dict(resumed.tensors["scheduler"])
        checkpoints.restore_rng_state(resumed.tensors["rng"])
        self.first_step = resumed.step + 1
        self.reporter.log(f"resumed from {resumed.path} after step {resumed.step}")


def encode_pairs(tokenizer, pairs: list[PreferencePair], max_reply_tokens: int,
                 device: torch.device) -> Rollouts:
    """Both replies of every pair as rollouts of its chat-templated prompt: row 2i is pair i's
    chosen reply, row 2i + 1 its rejected one. A reply is its tokens then EOS, cut to
    `max_reply_tokens` (a cut reply loses its EOS and counts as truncated)."""
    # The template already holds the special tokens; adding them again would double the BOS.
    prompts = tokenizer(prompt_texts(tokenizer, pairs), add_special_tokens=False)["input_ids"]
    texts = [reply for pair in pairs for reply in (pair.chosen, pair.rejected)]
    full = [ids + [tokenizer.eos_token_id]
            for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    replies = [ids[:max_reply_tokens] for ids in full]
    prompt_width = max(len(ids) for ids in prompts)
    reply_width = max(len(ids) for ids in replies)
    pad = tokenizer.pad_token_id
    input_ids, attention_mask, completion_mask = [], [], []
    for row, reply in enumerate(replies):
        prompt = prompts[row // 2]
        prompt_pad, reply_pad = prompt_width - len(prompt), reply_width - len(reply)
        input_ids.append([pad] * prompt_pad + prompt + reply + [pad] * reply_pad)
        attention_mask.append([0] * prompt_pad + [1] * (len(prompt) + len(reply))
                              + [0] * reply_pad)
        completion_mask.append([1] * len(reply) + [0] * reply_pad)
    return Rollouts(
        input_ids=torch.tensor(input_ids, device=device),  # (2n, P + T)
        attention_mask=torch.tensor(attention_mask, device=device),  # (2n, P + T)
        completion_mask=torch.tensor(completion_mask, device=device),  # (2n, T)
        lengths=torch.tensor([len(ids) for ids in replies]),  # (2n,)
        truncated=torch.tensor([len(r) < len(f) for r, f in zip(replies, full, strict=True)]),
        texts=texts)


def _update(model, reference, optimizer, batch: Rollouts, algorithm: DPO, config: RunConfig,
            should_stop: Callable[[], bool],
            ) -> tuple[dict[str, float], torch.Tensor] | None:
    """One optimiser step on the batch's pairs: the step's metrics and every reply's implicit
    reward (2n,), or None if stopped part-way.

    A micro-batch holds both replies of micro_batch_size / 2 pairs (at least one pair), since a
    pair's loss needs both; each micro-batch's loss is scaled by its share of the pairs, so the
    accumulated gradient is that of the mean loss over all pairs.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    device = batch.input_ids.device
    total_pairs = batch.input_ids.shape[0] // 2
    pairs_per_micro_batch = max(1, config.micro_batch_size // 2)
    rewards = torch.zeros(2 * total_pairs)  # (2n,) chosen, rejected, pair by pair
    sums: dict[str, float] = {"loss/dpo": 0.0}
    for first in range(0, total_pairs, pairs_per_micro_batch):
        if should_stop():
            optimizer.zero_grad(set_to_none=True)
            return None
        pair_count = min(pairs_per_micro_batch, total_pairs - first)
        start, end = 2 * first, 2 * (first + pair_count)  # the rows of both replies of m pairs
        rows = torch.arange(start, end, device=device)  # (2m,)
        input_ids, attention_mask, mask = micro_batch(batch, rows)  # mask (2m, T')
        with autocast(config, device):  # the forward passes only
            logp, _ = completion_logprobs(model, input_ids, attention_mask, mask.shape[1],
                                          temperature=1.0)  # (2m, T')
            with torch.no_grad():
                ref_logp, _ = completion_logprobs(reference, input_ids, attention_mask,
                                                  mask.shape[1], temperature=1.0)  # (2m, T')
        logps = _pair_logps(logp, ref_logp, mask)
        loss, stats = algorithm.pair_loss(logps)
        share = pair_count / total_pairs
        (loss * share).backward()
        chosen, rejected = algorithm.pair_rewards(logps)  # (m,) each
        rewards[start:end] = torch.stack([chosen, rejected], dim=1).reshape(-1).cpu()
        sums["loss/dpo"] += loss.item() * share
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + value.item() * share
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else math.inf
    trainable = [p for p in model.parameters() if p.requires_grad]
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm, foreach=True)
    optimizer.step()
    return {**sums, "optim/grad_norm": grad_norm.item()}, rewards


def _pair_logps(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> PairLogps:
    """Summed reply log-probs of pairs laid out chosen, rejected, chosen, …: logp, ref_logp,
    mask (2m, T') -> (m,) per field."""
    mask = mask.to(logp.dtype)
    policy = masked_sum(logp, mask, dim=1)  # (2m,)
    ref = masked_sum(ref_logp, mask, dim=1)  # (2m,)
    tokens = mask.sum(dim=1)  # (2m,)
    return PairLogps(chosen=policy[0::2], rejected=policy[1::2], ref_chosen=ref[0::2],
                     ref_rejected=ref[1::2], chosen_tokens=tokens[0::2],
                     rejected_tokens=tokens[1::2])


def _rollout_items(pairs: list[PreferencePair], batch: Rollouts, rewards: torch.Tensor,
                   config: RunConfig) -> list[dict[str, Any]]:
    """The step's first pairs as rollout items, both replies of a pair in one group; the reward
    is the implicit one, β (log π_θ − log π_ref), before this step's update."""
    count = min(len(pairs), math.ceil(config.rollouts_logged_per_step / 2))
    items = []
    for group, pair in enumerate(pairs[:count]):
        for sample_index, preference in enumerate(("chosen", "rejected")):
            row = 2 * group + sample_index
            items.append(RolloutRecord(
                prompt=pair.prompt, completion=batch.texts[row], reward=rewards[row].item(),
                rewards={}, advantage=0.0, group=group, sample_index=sample_index,
                prompt_id=pair.pair_id, completion_tokens=int(batch.lengths[row]),
                truncated=bool(batch.truncated[row]), extra={"preference": preference},
            ).as_dict())
    return items

