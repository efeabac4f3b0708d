"""PRL (Yao, Wang & Zhang, 2026, "PRL: Process Reward Learning Improves LLMs' Reasoning Ability
and Broadens the Reasoning Boundary", arXiv 2601.10201): the KL-regularised objective split into
steps, which turns the outcome reward into a reward for every step.

The entropy-regularised objective max_π E[r] − (1/η)·KL(π ‖ π_ref) has the optimum
π* ∝ π_ref·exp(η r), so along a completion the outcome reward minus (1/η)·log π/π_ref of what
follows is constant: each step's process reward is the outcome advantage less the log-ratio
still to come. With Â_i GRPO's group-normalised outcome advantage and, per token,

    ℓ_j = log π_old(o_j | ·) − log π_ref(o_j | ·)

the advantage of token t of completion i, whose step ends at token e(t), is

    A_i,t = Â_i − (1/η) Σ_{j ≥ e(t)} ℓ_j

so every token of a step shares its step's value. Steps are fixed blocks of L tokens (the last
token also ends a step), or end at a newline token or at a blank-line token. The per-token
advantages enter GRPO's clipped surrogate (training.algorithms.grpo.compute_loss).

As the authors' code (verl/trainer/ppo/ray_trainer.py, `prm.adv = orm`): Â_i divides by the
group's unbiased std + 1e-6; π_old's log-probs are those of the policy that sampled; the
reference is loaded even with β = 0 (their runs use a KL loss coefficient of 0). Departures: a
newline step ends at the tokenizer's newline token encoded without special tokens (the code's
`encode('\\n')[0]` is the BOS token on tokenizers that add one), and each token takes its own
step's value, where the code's fill takes the next non-zero value after a step whose value is
exactly 0.
"""

from __future__ import annotations

import time

import torch

from training.algorithms import grpo
from training.algorithms.base import Algorithm, OnlineRun, ScoredBatch
from training.algorithms.gtpo import completion_ids
from training.ops import masked_mean
from training.rollouts.logprobs import batch_logprobs

STEP_METRICS = 8  # prl/step_advantage/1 … /8: the mean advantage of each of the first steps
STEP_TOKENS = {"newline": "\n", "blank_line": "\n\n"}


class PRL(Algorithm):
    """Process advantages from the log-ratio to the reference; its settings are
    training.spec.algorithms.PRLSettings."""

    def advantages(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        started = time.perf_counter()
        config, settings, batch = self.config, self.settings, scored.batch
        rollouts = batch.rollouts
        mask = rollouts.completion_mask  # (N, T)
        batch.old_logp = batch_logprobs(run.model, rollouts, config)
        batch.ref_logp = batch_logprobs(run.reference.model, rollouts, config)
        step_token = None
        if settings.prl_step_rule in STEP_TOKENS:
            step_token = run.tokenizer.encode(STEP_TOKENS[settings.prl_step_rule],
                                              add_special_tokens=False)[0]
        ends = step_ends(completion_ids(rollouts.input_ids, mask), mask,
                         settings.prl_step_rule, settings.prl_step_length, step_token)
        outcome = grpo.compute_advantages(scored.rewards, config.group_size, eps=1e-6)
        process = process_terms(batch.old_logp, batch.ref_logp, mask, ends,
                                settings.prl_eta)  # (N, T)
        batch.advantages = (outcome.to(mask.device)[:, None] + process) * mask  # (N, T)
        batch.token_views["process"] = process
        return {**step_metrics(batch.advantages, process, mask, ends),
                "time/prl_s": time.perf_counter() - started}


def step_ends(ids: torch.Tensor, mask: torch.Tensor, rule: str, length: int,
              step_token: int | None = None) -> torch.Tensor:
    """Which tokens end a step, (N, T) bool: every `length`-th token ("length"), or each
    `step_token` ("newline", "blank_line"); a completion's last token always ends one.

    >>> mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    >>> step_ends(torch.zeros(2, 5), mask, "length", 2).int().tolist()
    [[0, 1, 0, 1, 1], [0, 1, 1, 0, 0]]
    >>> ids = torch.tensor([[5, 9, 5, 5, 5], [9, 5, 5, 0, 0]])
    >>> step_ends(ids, mask, "newline", 0, step_token=9).int().tolist()
    [[0, 1, 0, 0, 1], [1, 0, 1, 0, 0]]
    """
    valid = mask.bool()
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)[None, :]  # (1, T)
    if rule == "length":
        ends = (positions % length == 0) & valid
    elif rule in STEP_TOKENS:
        ends = (ids == step_token) & valid
    else:
        raise ValueError(f"unknown step rule {rule!r}")
    lengths = mask.sum(dim=1).long()  # (N,)
    last = positions == lengths[:, None]  # (N, T)
    return ends | (last & valid)


def process_terms(old_logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                  ends: torch.Tensor, eta: float) -> torch.Tensor:
    """−(1/η) Σ_{j ≥ e(t)} ℓ_j (N, T), with e(t) the first step end at or after t; 0 off the
    mask. old_logp, ref_logp, mask, ends (N, T).

    >>> old = torch.tensor([[-1.0, -1.0, -1.0]])
    >>> ref = torch.tensor([[-2.0, -1.5, -1.5]])  # ℓ = 1, 0.5, 0.5
    >>> ends = torch.tensor([[False, True, True]])  # steps: tokens 0-1, token 2
    >>> process_terms(old, ref, torch.ones(1, 3), ends, eta=2.0).tolist()
    [[-0.5, -0.5, -0.25]]
    """
    mask = mask.to(old_logp.dtype)
    log_ratio = (old_logp - ref_logp) * mask  # (N, T) ℓ_j
    to_go = log_ratio.flip(1).cumsum(1).flip(1)  # (N, T) Σ_{j ≥ t} ℓ_j
    width = mask.shape[1]
    positions = torch.arange(width, device=mask.device).expand_as(mask)  # (N, T)
    end_at = torch.where(ends, positions, torch.full_like(positions, width - 1))
    step_end = end_at.flip(1).cummin(1).values.flip(1)  # (N, T) e(t)
    return -to_go.gather(1, step_end) / eta * mask


def step_metrics(advantages: torch.Tensor, process: torch.Tensor, mask: torch.Tensor,
                 ends: torch.Tensor) -> dict[str, float]:
    """prl/process_std (the process term's spread over the step's tokens), prl/process_mean,
    prl/steps_mean (steps per completion) and prl/step_advantage/k, the mean advantage of the
    k-th step over the completions that have one, for the first STEP_METRICS steps."""
    valid = mask.bool()
    values = process[valid]
    metrics = {"prl/process_mean": values.mean().item() if values.numel() else 0.0,
               "prl/process_std": values.std().item() if values.numel() > 1 else 0.0,
               "prl/steps_mean": (ends & valid).sum(dim=1).float().mean().item()}
    steps = ends.long().cumsum(1) - ends.long()  # (N, T) each token's step, 0 for the first
    for k in range(STEP_METRICS):
        in_step = (steps == k) & valid  # (N, T)
        if not in_step.any():
            break
        metrics[f"prl/step_advantage/{k + 1}"] = masked_mean(
            advantages, in_step.to(advantages.dtype)).item()
    return metrics
