"""REINFORCE++ (Hu, 2025): a global-batch baseline instead of a per-prompt one.

Rewards are centred and scaled with the statistics of the whole batch, so prompts whose
completions all score alike still contribute (unlike GRPO's groups, where they get 0):

    Â_i = (r_i − mean(r over the batch)) / (std(r over the batch) + eps)

The policy loss is GRPO's clipped surrogate (training.algorithms.grpo.compute_loss); the paper
pairs it with a KL term, here the penalty with the chosen estimator when β > 0.
"""

from __future__ import annotations

import torch

from training.algorithms.base import Algorithm


class ReinforcePP(Algorithm):
    """The whole batch's baseline; no settings of its own."""

    def estimate(self, rewards: torch.Tensor, prompt_ids: list[str]) -> torch.Tensor:
        return compute_advantages(rewards)


def compute_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """rewards (N,) -> advantages (N,) normalised over the whole batch."""
    return (rewards - rewards.mean()) / (rewards.std() + eps)
