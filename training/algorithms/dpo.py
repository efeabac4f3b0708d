"""DPO (Rafailov et al., 2023) and IPO (Azar et al., 2023): learning offline from preference pairs.

Each pair is a prompt x with a chosen reply y_w and a rejected one y_l. With a frozen reference
policy π_ref (the initial policy), a reply's implicit reward is

    r(y) = β (log π_θ(y | x) − log π_ref(y | x)),    log π(y | x) = Σ_t log π(y_t | x, y_<t)

and the losses, averaged over pairs, are

    sigmoid (DPO)  ℓ = −log σ(β ((log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))))
                     = −log σ(r(y_w) − r(y_l))
    ipo (IPO)      h = (log π_θ(y_w) − log π_ref(y_w)) / |y_w|
                       − (log π_θ(y_l) − log π_ref(y_l)) / |y_l|
                   ℓ = (h − 1/(2β))²

DPO pushes the reward margin up without bound; IPO regresses the log-ratio gap h onto 1/(2β).
IPO's log-probs are averaged over each reply's |y| tokens, as in TRL's DPOTrainer (whose authors
confirmed this normalisation with the IPO authors), so that β means the same for short and long
replies. The logged rewards are r(y) from summed log-probs for both losses, as TRL logs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.algorithms.base import Algorithm


@dataclass(frozen=True)
class PairLogps:
    """Per-pair sequence log-probs, summed over each reply's tokens, and the reply lengths."""

    chosen: torch.Tensor  # (n,) log π_θ(y_w | x), with gradient
    rejected: torch.Tensor  # (n,) log π_θ(y_l | x), with gradient
    ref_chosen: torch.Tensor  # (n,) log π_ref(y_w | x)
    ref_rejected: torch.Tensor  # (n,) log π_ref(y_l | x)
    chosen_tokens: torch.Tensor  # (n,) |y_w|
    rejected_tokens: torch.Tensor  # (n,) |y_l|


DPOLoss = Callable[[PairLogps, float], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def implicit_rewards(logps: PairLogps, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """r(y_w), r(y_l) (n,) each, detached."""
    chosen = beta * (logps.chosen - logps.ref_chosen)  # (n,)
    rejected = beta * (logps.rejected - logps.ref_rejected)  # (n,)
    return chosen.detach(), rejected.detach()


def sigmoid_loss(logps: PairLogps, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DPO's loss, the mean over the n pairs, and the stats of `pair_stats`."""
    chosen_ratio = logps.chosen - logps.ref_chosen  # (n,)
    rejected_ratio = logps.rejected - logps.ref_rejected  # (n,)
    loss = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio)).mean()
    return loss, pair_stats(logps, beta)


def ipo_loss(logps: PairLogps, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IPO's loss on length-averaged log-ratios, the mean over the n pairs, and `pair_stats`."""
    chosen_ratio = (logps.chosen - logps.ref_chosen) / logps.chosen_tokens.clamp(min=1)  # (n,)
    rejected_ratio = (logps.rejected - logps.ref_rejected) / logps.rejected_tokens.clamp(min=1)
    gap = chosen_ratio - rejected_ratio  # (n,) h
    loss = ((gap - 1 / (2 * beta)) ** 2).mean()
    return loss, pair_stats(logps, beta)


LOSSES: dict[str, DPOLoss] = {"sigmoid": sigmoid_loss, "ipo": ipo_loss}


def pair_stats(logps: PairLogps, beta: float) -> dict[str, torch.Tensor]:
    """Means over the pairs of r(y_w), r(y_l), the margin r(y_w) − r(y_l), the fraction of pairs
    with r(y_w) > r(y_l), and the policy's summed log-probs of both replies; all detached."""
    chosen, rejected = implicit_rewards(logps, beta)  # (n,) each
    return {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margin": (chosen - rejected).mean(),
        "rewards/accuracy": (chosen > rejected).float().mean(),
        "logps/chosen": logps.chosen.detach().mean(),
        "logps/rejected": logps.rejected.detach().mean(),
    }


class DPO(Algorithm):
    """Offline: trained by training.loops.offline on a preference dataset's pairs, with the loss
    and β of its settings (training.spec.algorithms.DPOSettings)."""

    offline = True

    def pair_loss(self, logps: PairLogps) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mean loss over the pairs and its stats."""
        return LOSSES[self.settings.dpo_loss](logps, self.settings.dpo_beta)

    def pair_rewards(self, logps: PairLogps) -> tuple[torch.Tensor, torch.Tensor]:
        """The implicit rewards r(y_w), r(y_l) (n,) each, detached."""
        return implicit_rewards(logps, self.settings.dpo_beta)

    def describe(self) -> str:
        return f"{self.settings.dpo_loss} loss, β = {self.settings.dpo_beta:g}"
