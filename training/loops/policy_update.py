"""The policy update of one training step: μ optimisation passes over a batch of rollouts.

Each pass runs the batch in micro-batches, longest completions first, accumulating gradients so
that they add up to the gradient of the whole batch's loss, then takes one optimiser step. The
loss is GRPO's clipped surrogate (training.algorithms.grpo) with the run's variants.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from training.algorithms import ppo
from training.algorithms.aggregation import BatchShape
from training.algorithms.grpo import GRPOConfig, compute_loss
from training.spec.config import RunConfig
from training.rollouts.generation import Rollouts
from training.ops import (
    KL_ESTIMATORS,
    high_entropy_mask,
    masked_sum,
    tempered,
    token_logprobs_and_entropy,
)
from training.policies.shared_prompts import completion_states


def autocast(config: RunConfig, device: torch.device) -> torch.autocast:
    """bf16 compute for forward passes when the run asks for it; the weights, the optimiser
    state and the loss stay in fp32, since bf16 weights lose most small AdamW updates."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=config.dtype == "bfloat16")


class TokenRecorder:
    """Keeps the per-token log-probs, entropies and KL of chosen completions, as the first
    optimisation pass computes them, for the token view."""

    def __init__(self, rows: range, kl_estimator: str):
        self.wanted = set(rows)
        self.kl_estimator = kl_estimator
        self.details: dict[int, dict[str, list[float]]] = {}

    def record(self, rows: torch.Tensor, logp: torch.Tensor, entropy: torch.Tensor,
               ref_logp: torch.Tensor | None, mask: torch.Tensor) -> None:
        """rows (n,); logp, entropy, ref_logp, mask (n, T')."""
        for k, row in enumerate(rows.tolist()):
            if row not in self.wanted:
                continue
            n = int(mask[k].sum().item())
            detail = {"logprob": _rounded(logp[k, :n]), "entropy": _rounded(entropy[k, :n])}
            if ref_logp is not None:
                kl = KL_ESTIMATORS[self.kl_estimator](logp[k, :n], ref_logp[k, :n])
                detail["kl"] = _rounded(kl)
            self.details[row] = detail


def _rounded(values: torch.Tensor) -> list[float]:
    return [round(v, 4) for v in values.detach().float().tolist()]


@dataclass
class StepBatch:
    """One step's rollouts and what the loss needs of them beyond the policy's own log-probs."""

    rollouts: Rollouts
    advantages: torch.Tensor  # (N,) one per completion, or (N, T) one per token (PPO)
    old_logp: torch.Tensor | None = None  # (N, T) π_old's, when computed before the update
    ref_logp: torch.Tensor | None = None  # (N, T) π_ref's, likewise
    old_values: torch.Tensor | None = None  # (N, T) PPO: V_old of every completion token
    returns: torch.Tensor | None = None  # (N, T) PPO: the value targets R_t of GAE


def update_policy(model, reference, optimizer, scheduler, batch: StepBatch, algo: GRPOConfig,
                  config: RunConfig, should_stop: Callable[[], bool], *, beta: float,
                  recorder: TokenRecorder | None = None,
                  value_head: ppo.ValueHead | None = None) -> dict[str, float] | None:
    """μ optimisation passes over the batch: metrics averaged over them (the gradient norm is
    the last pass's), or None if stopped part-way. `beta` weighs the KL term of the loss (0
    when the KL is folded into the reward instead). With a `value_head` (PPO), the batch holds
    old values and returns, and the loss adds the value loss, weighted by value_coef.

    With one pass, π_old is the policy being updated and its log-probs come from the same
    forward pass. With more, π_old's (and π_ref's) log-probs are computed once, before the first
    pass, and the ratio of later passes measures how far the policy has moved since sampling.
    """
    order = micro_batch_order(batch.rollouts)
    started = time.perf_counter()
    if config.num_iterations > 1 and batch.old_logp is None:
        batch.old_logp = batch_logprobs(model, batch.rollouts, config)
    if config.num_iterations > 1 and batch.ref_logp is None and reference is not None:
        batch.ref_logp = batch_logprobs(reference, batch.rollouts, config)
    timings = {"time/reference_s": time.perf_counter() - started}
    passes = []
    for iteration in range(config.num_iterations):
        metrics = _update_pass(model, reference, optimizer, batch, algo, config, should_stop,
                               order, beta, timings, recorder if iteration == 0 else None,
                               value_head)
        if metrics is None:
            return None
        scheduler.step()
        passes.append(metrics)
    averaged = {key: sum(p[key] for p in passes) / len(passes) for key in passes[0]}
    return {**averaged, "optim/grad_norm": passes[-1]["optim/grad_norm"], **timings}


def micro_batch_order(rollouts: Rollouts) -> torch.Tensor:
    """Row order for micro-batches (N,): the completions of one prompt together, so that a
    micro-batch runs their prompt once (training.policies.shared_prompts); longest completion first
    within a prompt, and prompts by their longest completion, so that similar lengths share a
    micro-batch (less padding to compute) and the largest, the one that could run out of
    memory, comes first."""
    prompt_length = rollouts.input_ids.shape[1] - rollouts.completion_mask.shape[1]
    prompts = torch.cat([rollouts.input_ids[:, :prompt_length],
                         rollouts.attention_mask[:, :prompt_length]], dim=1).cpu()
    _, prompt_of_row = torch.unique(prompts, dim=0, return_inverse=True)  # (N,)
    lengths = rollouts.lengths.cpu()
    longest = torch.zeros(int(prompt_of_row.max()) + 1, dtype=lengths.dtype).scatter_reduce(
        0, prompt_of_row, lengths, reduce="amax")  # (M,) each prompt's longest completion
    rows = sorted(range(len(lengths)), key=lambda i: (-int(longest[prompt_of_row[i]]),
                                                      int(prompt_of_row[i]), -int(lengths[i])))
    return torch.tensor(rows, dtype=torch.long)


def batch_logprobs(model, rollouts: Rollouts, config: RunConfig,
                   value_head: ppo.ValueHead | None = None,
                   ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (N, T) of every completion token under `model`, without gradient; 0 beyond
    each completion's end. With a `value_head` (PPO), also the values (N, T) of the same
    positions, from the same forward passes."""
    device = rollouts.input_ids.device
    logps = torch.zeros(rollouts.completion_mask.shape, device=device)
    values = torch.zeros_like(logps)
    was_training = model.training
    model.eval()
    order = micro_batch_order(rollouts)
    with torch.no_grad():
        for start in range(0, len(order), config.micro_batch_size):
            rows = order[start:start + config.micro_batch_size].to(device)  # (n,)
            input_ids, attention_mask, mask = micro_batch(rollouts, rows)
            with autocast(config, device):
                if value_head is None:
                    logp, _ = completion_logprobs(model, input_ids, attention_mask,
                                                  mask.shape[1], config.temperature)  # (n, T')
                else:
                    logp, _, value = ppo.logprobs_entropy_and_values(
                        model, value_head, input_ids, attention_mask, mask.shape[1],
                        config.temperature)  # (n, T')
                    values[rows, :mask.shape[1]] = value * mask
            logps[rows, :mask.shape[1]] = logp * mask
    model.train(was_training)
    return logps if value_head is None else (logps, values)


def _update_pass(model, reference, optimizer, batch: StepBatch, algo: GRPOConfig,
                 config: RunConfig, should_stop: Callable[[], bool], order: torch.Tensor,
                 beta: float, timings: dict[str, float],
                 recorder: TokenRecorder | None = None,
                 value_head: ppo.ValueHead | None = None) -> dict[str, float] | None:
    """One optimisation pass over the batch; its metrics, or None if stopped part-way."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    rollouts, advantages = batch.rollouts, batch.advantages
    device = rollouts.input_ids.device
    total = rollouts.input_ids.shape[0]
    loss_mask = rollouts.completion_mask  # (N, T)
    if algo.mask_truncated:
        loss_mask = loss_mask * (~rollouts.truncated).to(device)[:, None]
    total_tokens = rollouts.completion_mask.sum().item()
    shape = BatchShape(sequences=total, tokens=int(loss_mask.sum().item()),
                       max_completion_length=config.max_new_tokens,
                       micro_batches=math.ceil(total / config.micro_batch_size))
    sums: dict[str, float] = {"loss/policy": 0.0, "entropy/mean": 0.0}
    if value_head is not None:
        sums["loss/value"] = 0.0
    sampled = rollouts.sampled_logprobs if recorder is not None else None
    if sampled is not None:
        sums["rollout/logprob_mismatch"] = 0.0
    for start in range(0, total, config.micro_batch_size):
        if should_stop():
            optimizer.zero_grad(set_to_none=True)
            return None
        rows = order[start:start + config.micro_batch_size].to(device)  # (n,)
        input_ids, attention_mask, mask = micro_batch(rollouts, rows)  # mask (n, T')
        with autocast(config, device):  # the forward pass only; backward after it
            if value_head is None:
                logp, entropy = completion_logprobs(
                    model, input_ids, attention_mask, mask.shape[1], config.temperature,
                    entropy_grad=config.entropy_coef > 0)  # (n, T')
            else:
                logp, entropy, values = ppo.logprobs_entropy_and_values(
                    model, value_head, input_ids, attention_mask, mask.shape[1],
                    config.temperature, entropy_grad=config.entropy_coef > 0)  # (n, T')
        width = mask.shape[1]
        # π_old = π_θ when the log-probs were not stored: a single pass per batch of rollouts
        old_logp = (batch.old_logp[rows, :width] if batch.old_logp is not None
                    else logp.detach())  # (n, T')
        ref_logp = batch.ref_logp[rows, :width] if batch.ref_logp is not None else None
        if ref_logp is None and reference is not None:
            reference_start = time.perf_counter()
            with torch.no_grad(), autocast(config, device):
                ref_logp, _ = completion_logprobs(reference, input_ids, attention_mask, width,
                                                  config.temperature)
            timings["time/reference_s"] += time.perf_counter() - reference_start
        if recorder is not None:
            recorder.record(rows, logp, entropy, ref_logp, mask)
        if sampled is not None:
            gap = (logp.detach() - sampled[rows, :width].to(logp.device)).abs()
            sums["rollout/logprob_mismatch"] += masked_sum(gap, mask).item() / max(total_tokens, 1)
        rows_mask = loss_mask[rows, :width]  # (n, T')
        policy_mask = None
        if config.top_entropy_quantile < 1:
            policy_mask = high_entropy_mask(entropy.detach(), rows_mask,
                                            config.top_entropy_quantile)
        row_advantages = advantages[rows]
        if row_advantages.dim() == 2:  # per token: cut to the micro-batch's width
            row_advantages = row_advantages[:, :width]
        policy_loss, stats = compute_loss(
            logp, old_logp, ref_logp, row_advantages, rows_mask,
            epsilon_low=algo.epsilon_low, epsilon_high=algo.epsilon_high, beta=beta,
            kl_estimator=algo.kl_estimator, importance_level=algo.importance_level,
            loss_type=algo.loss_type, shape=shape, entropy=entropy,
            entropy_coef=config.entropy_coef, policy_mask=policy_mask)
        loss = policy_loss
        if value_head is not None:
            # Every completion token has a value target, truncated ones too: mask, not rows_mask.
            value_loss, value_stats = ppo.value_loss(
                values, batch.old_values[rows, :width], batch.returns[rows, :width], mask,
                config.value_clip, step_tokens=total_tokens)
            loss = loss + config.value_coef * value_loss
            sums["loss/value"] += value_loss.item()
            stats.update(value_stats)
        # `loss` is this micro-batch's share of the step loss, so the gradients add up to the
        # gradient of the whole batch's loss.
        loss.backward()
        token_share = mask.sum().item() / max(total_tokens, 1)
        sums["loss/policy"] += policy_loss.item()
        sums["entropy/mean"] += masked_sum(entropy, mask).item() / max(total_tokens, 1)
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + value.item() * token_share
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else math.inf
    trainable = [p for p in model.parameters() if p.requires_grad]
    if value_head is not None:
        trainable += list(value_head.parameters())
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm, foreach=True)
    optimizer.step()
    return {**sums, "optim/grad_norm": grad_norm.item()}


def micro_batch(rollouts: Rollouts, rows: torch.Tensor,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask (n, P' + T') and completion_mask (n, T') of `rows`, without the
    leading and trailing columns that are padding in every one of them."""
    prompt_length = rollouts.input_ids.shape[1] - rollouts.completion_mask.shape[1]
    attention_mask = rollouts.attention_mask[rows]  # (n, P + T)
    first = int(attention_mask[:, :prompt_length].any(dim=0).int().argmax())
    width = int(rollouts.lengths[rows.cpu()].max())
    end = prompt_length + width
    return (rollouts.input_ids[rows, first:end], attention_mask[:, first:end],
            rollouts.completion_mask[rows, :width])


def completion_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        completion_length: int, temperature: float, *,
                        entropy_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of the last `completion_length` tokens, as sampled.

    input_ids, attention_mask (n, P + T) -> logp, entropy (n, T). Logits are divided by the
    sampling temperature so that log-probs are those of the distribution the tokens came from.
    Rows that share a prompt run it once (training.policies.shared_prompts).
    """
    logits = completion_states(model, input_ids, attention_mask, completion_length).logits
    return token_logprobs_and_entropy(tempered(logits, temperature),
                                      input_ids[:, -completion_length:], entropy_grad=entropy_grad)
