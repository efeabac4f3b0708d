"""The KL coefficient β: fixed, or adapted each step to hold the measured KL near a target.

Adaptive control follows Ziegler et al. (2019), "Fine-Tuning Language Models from Human
Preferences", as TRL's AdaptiveKLController does:

    e_t     = clip(KL_t / KL_target − 1, −0.2, 0.2)
    β_{t+1} = β_t · (1 + e_t · n_t / H)

with KL_t the step's KL per completion: each completion's per-token KL estimates summed over
its tokens, averaged over the step's completions (nats per completion, as Ziegler et al.'s and
TRL's `kl.sum(1).mean()`; a per-token mean would be a target smaller by the completion length),
n_t the completions in the step and H the horizon: β grows while the policy drifts further than
the target and shrinks while it stays closer.
"""

from __future__ import annotations


class KLController:
    """β for the next step; `update` after each step with the KL per completion it measured."""

    def __init__(self, beta: float, target: float = 0.0, horizon: int = 10_000):
        self.beta = beta
        self.target = target  # 0: β stays fixed
        self.horizon = horizon

    def update(self, kl: float, completions: int) -> None:
        """
        >>> c = KLController(0.1, target=0.05, horizon=100)
        >>> c.update(kl=0.1, completions=10)  # twice the target: error clipped to +0.2
        >>> round(c.beta, 6)
        0.102
        >>> fixed = KLController(0.1); fixed.update(kl=5.0, completions=10); fixed.beta
        0.1
        """
        if self.target <= 0:
            return
        error = min(max(kl / self.target - 1, -0.2), 0.2)
        self.beta *= 1 + error * completions / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.beta = float(state["beta"])
