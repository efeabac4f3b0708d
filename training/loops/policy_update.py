"""The policy update of one training step: μ optimisation passes over a batch of rollouts.

Each pass runs the batch in micro-batches, longest completions first, accumulating gradients so
that they add up to the gradient of the whole batch's loss, then takes one optimiser step. The
loss is GRPO's clipped surrogate (training.algorithms.grpo) with the run's variants, plus the
algorithm's own terms (PPO's value loss) from the algorithm's own forward pass, and its losses
on data of its own (`auxiliary_backward`: DPH-RL's stored samples, RMT's next-token loss).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch

from training.algorithms.aggregation import BatchShape
from training.algorithms.base import Algorithm, StepBatch
from training.algorithms.grpo import GRPOConfig, compute_loss
from training.ops import KL_ESTIMATORS, high_entropy_mask, masked_sum
from training.parallel import World
from training.rollouts.logprobs import (
    autocast,
    batch_logprobs,
    completion_logprobs,
    micro_batch,
    micro_batch_order,
)
from training.spec.config import RunConfig


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


def update_policy(model, reference, optimizer, scheduler, batch: StepBatch, surrogate: GRPOConfig,
                  config: RunConfig, should_stop: Callable[[], bool], *, beta: float,
                  algorithm: Algorithm, recorder: TokenRecorder | None = None,
                  world: World | None = None) -> dict[str, float] | None:
    """μ optimisation passes over the batch: metrics averaged over them (the gradient norm is
    the last pass's), or None if stopped part-way. `beta` weighs the KL term of the loss (0
    when the KL is folded into the reward instead). The `algorithm` gives the forward pass and
    its own loss terms (PPO's value loss, from the targets in the batch).

    With one pass, π_old is the policy being updated and its log-probs come from the same
    forward pass. With more, π_old's (and π_ref's) log-probs are computed once, before the first
    pass, and the ratio of later passes measures how far the policy has moved since sampling.

    In a run over several processes (training.parallel) `model` is DistributedDataParallel (or
    sharded by FSDP2) and `batch` this process's share: the normalisers and the metrics span the whole batch.
    """
    world = world or World.single()
    order = micro_batch_order(batch.rollouts)
    started = time.perf_counter()
    if config.num_iterations > 1 and batch.old_logp is None:
        batch.old_logp = batch_logprobs(model, batch.rollouts, config)
    if config.num_iterations > 1 and batch.ref_logp is None and reference is not None:
        batch.ref_logp = batch_logprobs(reference, batch.rollouts, config)
    timings = {"time/reference_s": time.perf_counter() - started}
    passes = []
    for iteration in range(config.num_iterations):
        metrics = _update_pass(model, reference, optimizer, batch, surrogate, config, should_stop,
                               order, beta, timings, algorithm,
                               recorder if iteration == 0 else None, world)
        if metrics is None:
            return None
        scheduler.step()
        passes.append(metrics)
    averaged = {key: sum(p[key] for p in passes) / len(passes) for key in passes[0]}
    return {**averaged, "optim/grad_norm": passes[-1]["optim/grad_norm"], **timings}


def _update_pass(model, reference, optimizer, batch: StepBatch, surrogate: GRPOConfig,
                 config: RunConfig, should_stop: Callable[[], bool], order: torch.Tensor,
                 beta: float, timings: dict[str, float], algorithm: Algorithm,
                 recorder: TokenRecorder | None = None, world: World = World.single(),
                 ) -> dict[str, float] | None:
    """One optimisation pass over the batch; its metrics, or None if stopped part-way."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    rollouts, advantages = batch.rollouts, batch.advantages
    device = rollouts.input_ids.device
    local = rollouts.input_ids.shape[0]
    loss_mask = rollouts.completion_mask  # (N, T)
    if surrogate.mask_truncated:
        loss_mask = loss_mask * (~rollouts.truncated).to(device)[:, None]
    # Over the whole batch, every process's share included: a micro-batch's loss is its share
    # of the step loss of all of them.
    counts = world.sum({"sequences": local, "tokens": rollouts.completion_mask.sum().item(),
                        "loss_tokens": loss_mask.sum().item()})
    total, total_tokens = int(counts["sequences"]), int(counts["tokens"])
    shape = BatchShape(sequences=total, tokens=int(counts["loss_tokens"]),
                       max_completion_length=config.max_new_tokens,
                       micro_batches=math.ceil(local / config.micro_batch_size))
    # DDP (or FSDP2's reduce-scatter) averages the processes' gradients; each process's loss is
    # its share of the sum.
    scale = float(world.size)
    sums: dict[str, float] = {"loss/policy": 0.0, "entropy/mean": 0.0}
    sampled = rollouts.sampled_logprobs if recorder is not None else None
    if sampled is not None:
        sums["rollout/logprob_mismatch"] = 0.0
    for start in range(0, local, config.micro_batch_size):
        if should_stop():
            optimizer.zero_grad(set_to_none=True)
            return None
        world.sync_gradients(model, last=start + config.micro_batch_size >= local)
        rows = order[start:start + config.micro_batch_size].to(device)  # (n,)
        input_ids, attention_mask, mask = micro_batch(rollouts, rows)  # mask (n, T')
        with autocast(config, device):  # the forward pass only; backward after it
            forward = algorithm.forward(model, input_ids, attention_mask, mask.shape[1],
                                        config.temperature,
                                        entropy_grad=config.entropy_coef > 0)
        logp, entropy = forward.logp, forward.entropy  # (n, T')
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
            epsilon_low=surrogate.epsilon_low, epsilon_high=surrogate.epsilon_high, beta=beta,
            kl_estimator=surrogate.kl_estimator, importance_level=surrogate.importance_level,
            loss_type=surrogate.loss_type, shape=shape, entropy=entropy,
            entropy_coef=config.entropy_coef, policy_mask=policy_mask,
            kl_bias_correction=surrogate.kl_bias_correction)
        loss = policy_loss
        extra = algorithm.extra_loss(forward, batch, rows, mask, total_tokens)
        if extra is not None:
            loss = loss + extra.loss
            for key, value in extra.sums.items():
                sums[key] = sums.get(key, 0.0) + value
            stats.update(extra.means)
        # `loss` is this micro-batch's share of the step loss, so the gradients add up to the
        # gradient of the whole batch's loss.
        (loss * scale if world.distributed else loss).backward()
        token_share = mask.sum().item() / max(total_tokens, 1)
        sums["loss/policy"] += policy_loss.item()
        sums["entropy/mean"] += masked_sum(entropy, mask).item() / max(total_tokens, 1)
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + value.item() * token_share
        if "kl/mean" in stats:  # each completion's KL summed over its tokens, then averaged
            sums["kl/sequence_mean"] = (sums.get("kl/sequence_mean", 0.0) + stats[
                "kl/mean"].item() * rows_mask.sum().item() / total)
    if should_stop():
        optimizer.zero_grad(set_to_none=True)
        return None
    sums = world.sum(sums)
    sums.update(algorithm.auxiliary_backward(model))
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else math.inf
    # the policy's trainable weights, then the algorithm's own (PPO's value head)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm, foreach=True)
    optimizer.step()
    return {**sums, "optim/grad_norm": grad_norm.item()}
