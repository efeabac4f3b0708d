"""GTPO (Simoni et al., 2025, "GTPO: Trajectory-Based Policy Optimization in Large Language
Models", arXiv 2508.03772): GRPO without a reference model, with two changes to what each token
is taught.

Conflict tokens. In a group, a token is in conflict when the same token sits at the same position
in a completion with a positive advantage and in one with a negative advantage: GRPO pushes it
up in one and down in the other, and tokens that every answer shares (formatting, the opening
words) lose probability although they are right. As in the authors' code, positions are aligned
from the start and from the end of the completions, and only the runs of conflict tokens that
begin at either end count (a shared opening, a shared ending). A conflict token gets no negative
update and a positive one multiplied by w (2 in the code):

    δ_i,t = w  if t is a conflict token of o_i and Â_i > 0
            0  if t is a conflict token of o_i and Â_i < 0
            1  otherwise                   (δ of the opening and of the ending run multiply)

Entropy. Let H̄_i be the mean entropy of the policy's next-token distribution over o_i's tokens,
before the update. A completion above the threshold τ_H is left out (its advantage is 0: a
flattening policy is not pushed further), and the others' advantage is lowered by c·H̄_i:

    Â'_i = 0                 if H̄_i > τ_H
    Â'_i = Â_i − c·H̄_i      otherwise

with Â_i GRPO's group-normalised advantage. The per-token advantage is then

    A_i,t = Â'_i · δ_i,t / max(n_i, 1)

where n_i counts o_i's conflict tokens: the authors' code divides each completion's loss by it
(the paper does not say so; rlab follows the code). These advantages enter GRPO's clipped
surrogate (training.algorithms.grpo.compute_loss), which takes one advantage per token; with one
pass per batch the ratio is 1, as in the code, whose loss is the plain policy gradient.
"""

from __future__ import annotations

import time

import torch

from training.algorithms import grpo
from training.algorithms.base import Algorithm, OnlineRun, ScoredBatch
from training.ops import masked_mean
from training.rollouts.logprobs import batch_forward


class GTPO(Algorithm):
    """Conflict-aware, entropy-filtered per-token advantages; its settings are
    training.spec.algorithms.GTPOSettings."""

    def advantages(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        started = time.perf_counter()
        rollouts, settings = scored.batch.rollouts, self.settings
        mask = rollouts.completion_mask  # (N, T)
        entropy = batch_forward(run.model, rollouts, self.config).entropy  # (N, T)
        mean_entropy = masked_mean(entropy, mask.to(entropy.dtype), dim=1).cpu()  # (N,)
        outcome = grpo.compute_advantages(scored.rewards, self.config.group_size)  # (N,)
        ids = completion_ids(rollouts.input_ids, mask).cpu()  # (N, T)
        weights, conflict = conflict_weights(ids, mask.cpu(), outcome, self.config.group_size,
                                             settings.gtpo_conflict_weight)  # (N, T) each
        conflicts = conflict.sum(dim=1)  # (N,)
        shaped, kept = entropy_shaped(outcome, mean_entropy, settings.gtpo_entropy_threshold,
                                      settings.gtpo_entropy_coef)  # (N,) each
        scored.batch.advantages = (shaped[:, None] * weights
                                   / conflicts.clamp(min=1)[:, None])  # (N, T)
        scored.batch.token_views["conflict"] = conflict.float()
        tokens = mask.sum().item()
        return {"gtpo/conflict_fraction": conflicts.sum().item() / max(tokens, 1),
                "gtpo/filtered_fraction": 1 - kept.float().mean().item(),
                "gtpo/entropy_mean": mean_entropy.mean().item(),
                "time/gtpo_s": time.perf_counter() - started}


def completion_ids(input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """The completion tokens' ids (N, T), from input_ids (N, P + T); -1 outside the mask."""
    width = completion_mask.shape[1]
    ids = input_ids[:, -width:]  # (N, T)
    return torch.where(completion_mask.bool(), ids, torch.full_like(ids, -1))


def conflict_weights(ids: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor,
                     group_size: int, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """δ (N, T) of the module docstring, and which tokens are conflict tokens (N, T) bool.

    ids, mask (N, T), completions ordered group by group, right-padded; advantages (N,) decide
    which completions are positive and negative.

    >>> ids = torch.tensor([[5, 6, 7], [5, 6, 8], [5, 9, 7]])
    >>> mask = torch.ones(3, 3)
    >>> delta, conflict = conflict_weights(ids, mask, torch.tensor([1.0, -1.0, 0.0]), 3, 2.0)
    >>> delta.tolist(), conflict.sum(dim=1).tolist()
    ([[2.0, 2.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]], [2, 2, 0])
    """
    forward = _conflicts(ids, mask, advantages, group_size)  # (N, T)
    backward = _from_the_end(_conflicts(_from_the_end(ids, mask), _from_the_end(mask, mask),
                                        advantages, group_size), mask)  # (N, T)
    positive = (advantages > 0)[:, None]  # (N, 1)
    mask = mask.bool()
    delta = torch.ones(ids.shape)  # (N, T)
    for conflict in (forward, backward):
        delta = delta * torch.where(conflict, torch.where(positive, weight, 0.0), 1.0)
    delta = delta * mask
    return delta, (forward | backward) & mask


def _conflicts(ids: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor,
               group_size: int) -> torch.Tensor:
    """Each completion's leading run of tokens that a positive and a negative completion of its
    group both have at the same position: (N, T) bool. Completions with Â = 0 have none."""
    n, width = ids.shape
    grouped = ids.view(-1, group_size, width)  # (B, G, T)
    valid = mask.bool().view(-1, group_size, width)  # (B, G, T)
    positive = (advantages > 0).view(-1, group_size, 1) & valid  # (B, G, T)
    negative = (advantages < 0).view(-1, group_size, 1) & valid  # (B, G, T)
    same = grouped[:, :, None, :] == grouped[:, None, :, :]  # (B, G, G, T) i's token at t = j's
    in_positive = (same & positive[:, None, :, :]).any(dim=2)  # (B, G, T)
    in_negative = (same & negative[:, None, :, :]).any(dim=2)  # (B, G, T)
    active = (advantages != 0).view(-1, group_size, 1)  # (B, G, 1)
    raw = in_positive & in_negative & valid & active  # (B, G, T)
    leading = torch.cumprod(raw.int(), dim=2).bool()  # (B, G, T) the run from t = 0
    return leading.view(n, width)


def _from_the_end(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's first len_i entries reversed, the padding left where it is: its last token
    first. Applied twice, it gives the rows back. values, mask (N, T)."""
    lengths = mask.sum(dim=1).long()  # (N,)
    positions = torch.arange(values.shape[1])[None, :]  # (1, T)
    source = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions,
                         positions)  # (N, T)
    return values.gather(1, source)


def entropy_shaped(advantages: torch.Tensor, mean_entropy: torch.Tensor, threshold: float,
                   coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Â' (N,) of the module docstring, and which completions were kept (N,) bool.

    >>> shaped, kept = entropy_shaped(torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.9]),
    ...                               0.7, 0.1)
    >>> [round(v, 4) for v in shaped.tolist()], kept.tolist()
    ([0.95, 0.0], [True, False])
    """
    kept = mean_entropy <= threshold  # (N,)
    return torch.where(kept, advantages - coef * mean_entropy, 0.0), kept
