"""REINFORCE++ (Hu, 2025): the KL to the reference folded into each token's reward, returns to
go, and advantages whitened over every token of the batch, in place of a per-prompt baseline.

With the KL in the reward (kl_placement = "reward", β > 0), token t of completion i gets the
reward −β·KL_i,t, and its last token the outcome reward r_i as well. The return to go (γ = 1) is

    G_i,t = r_i − β Σ_{t' ≥ t} KL_i,t'

with KL_i,t' the chosen estimator of log π_old / π_ref at token t' (the paper's is k1). Without
the KL in the reward, G_i,t = r_i for every token. The advantages are G whitened over all the
completion tokens of the batch:

    A_i,t = (G_i,t − mean(G)) / sqrt(var(G) + 1e-8)

mean and (unbiased) var taken over the tokens, as veRL's `masked_whiten` and OpenRLHF's
REINFORCE++ do: a prompt whose completions all score alike still contributes, unlike GRPO's
groups, and a long completion weighs by its tokens. The policy loss is GRPO's clipped surrogate
(training.algorithms.grpo.compute_loss), with one advantage per token.
"""

from __future__ import annotations

import time

import torch

from training.algorithms.base import Algorithm, OnlineRun, ScoredBatch
from training.ops import KL_ESTIMATORS, masked_mean, masked_sum
from training.rollouts.logprobs import batch_logprobs


class ReinforcePP(Algorithm):
    """Per-token returns with the KL in the reward, whitened over the batch's tokens; no settings
    of its own (β, the estimator and where the KL enters are the run's KL settings)."""

    def advantages(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        config, batch = self.config, scored.batch
        mask = batch.rollouts.completion_mask  # (N, T)
        metrics: dict[str, float] = {}
        kl = None
        if run.reference is not None and config.kl_placement == "reward":
            started = time.perf_counter()
            batch.old_logp = batch_logprobs(run.model, batch.rollouts, config)
            batch.ref_logp = batch_logprobs(run.reference.model, batch.rollouts, config)
            kl = KL_ESTIMATORS[config.kl_estimator](batch.old_logp, batch.ref_logp)  # (N, T)
            sequence_kl = masked_sum(kl, mask, dim=1)  # (N,)
            metrics["kl/sequence_mean"] = sequence_kl.mean().item()
            metrics["reward/shaped_mean"] = (scored.rewards.to(mask.device)
                                             - scored.beta * sequence_kl).mean().item()
            metrics["time/kl_reward_s"] = time.perf_counter() - started
        batch.advantages = compute_advantages(scored.rewards.to(mask.device), mask, kl,
                                              scored.beta)
        return metrics


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None,
                  beta: float = 0.0) -> torch.Tensor:
    """G (N, T) of the module docstring: rewards (N,), mask and kl (N, T); 0 off the mask.

    >>> G = returns_to_go(torch.tensor([1.0]), torch.tensor([[1.0, 1.0, 0.0]]),
    ...                   torch.tensor([[0.5, 0.25, 9.0]]), beta=0.1)
    >>> [round(g, 4) for g in G[0].tolist()]
    [0.925, 0.975, 0.0]
    """
    returns = rewards[:, None].expand(mask.shape).to(mask.dtype)  # (N, T)
    if kl is not None:
        token_kl = kl * mask  # (N, T): the padding's KL is no cost
        to_go = token_kl.flip(1).cumsum(1).flip(1)  # (N, T) Σ_{t' ≥ t} KL_t'
        returns = returns - beta * to_go
    return returns * mask


def compute_advantages(rewards: torch.Tensor, mask: torch.Tensor,
                       kl: torch.Tensor | None = None, beta: float = 0.0,
                       eps: float = 1e-8) -> torch.Tensor:
    """A (N, T): the returns to go whitened over the batch's completion tokens; 0 off the mask.

    >>> mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    >>> A = compute_advantages(torch.tensor([1.0, 0.0]), mask, eps=0.0)  # G = 1, 1 | 0
    >>> [[round(a, 4) for a in row] for row in A.tolist()]
    [[0.5774, 0.5774], [-1.1547, 0.0]]
    """
    mask = mask.to(rewards.dtype)
    returns = returns_to_go(rewards, mask, kl, beta)  # (N, T)
    mean = masked_mean(returns, mask)
    count = mask.sum().clamp(min=2)
    var = masked_sum((returns - mean) ** 2, mask) / (count - 1)  # unbiased, as masked_whiten
    return torch.where(mask.bool(), (returns - mean) * torch.rsqrt(var + eps), 0.0)
