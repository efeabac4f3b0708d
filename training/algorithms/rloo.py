"""RLOO (Ahmadian et al., 2024, "Back to Basics"): REINFORCE with a leave-one-out baseline.

Each completion's baseline is the mean reward of the other G − 1 completions of its prompt,
so the baseline never depends on the completion it judges:

    Â_i = r_i − 1/(G − 1) Σ_(j≠i) r_j  =  G/(G − 1) · (r_i − mean(r_1..r_G))

No division by a standard deviation. The policy loss is GRPO's clipped surrogate
(training.algorithms.grpo.compute_loss), with its aggregation and KL options.
"""

from __future__ import annotations

import torch

from training.algorithms.base import Algorithm


class RLOO(Algorithm):
    """The leave-one-out baseline; no settings of its own."""

    def estimate(self, rewards: torch.Tensor, prompt_ids: list[str]) -> torch.Tensor:
        return compute_advantages(rewards, self.config.group_size)


def compute_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """rewards (B*G,) ordered group by group -> leave-one-out advantages (B*G,); G ≥ 2."""
    grouped = rewards.view(-1, group_size)  # (B, G)
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)  # (B, G)
    return (grouped - others_mean).reshape(-1)  # (B*G,)
