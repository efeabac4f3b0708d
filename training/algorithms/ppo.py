"""PPO for language models (Schulman et al., 2017; Ouyang et al., 2022): a learned value head and
GAE give every completion token its own advantage.

A completion o_1..o_T is an episode whose state s_t is the prompt and o_<t, whose action is o_t.
The reward r comes once, on the last token; with the KL penalty placed in the reward, every token
also pays for drifting from the reference policy:

    r_t = −β KL_t + [t = T] r

A value head on the policy's last hidden state predicts V(s_t), so V_t is read from the hidden
state that predicts o_t (the one before o_t is seen), and the value after the last token is 0.
GAE (Schulman et al., 2016) runs backwards over the completion's tokens:

    δ_t = r_t + γ V_(t+1) − V_t
    Â_t = δ_t + γ λ Â_(t+1)          (Â_(T+1) = 0, V_(T+1) = 0)
    R_t = Â_t + V_t                  the value target

Â is whitened over the batch's completion tokens (zero mean, unit std) before it enters the
clipped surrogate of training.algorithms.grpo.compute_loss, one advantage per token. The value
head (and, through it, the shared backbone) minimises the clipped value loss:

    ℓ^V_t = ½ max((V_t − R_t)², (clip(V_t, V_old,t − ε_v, V_old,t + ε_v) − R_t)²)

averaged over completion tokens (ε_v = 0: no clipping). Padding positions, right of each
completion, take no part: they get no reward, no advantage and no value loss.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from training.algorithms.base import Algorithm, LossTerms, OnlineRun, ScoredBatch, StepBatch
from training.ops import (
    KL_ESTIMATORS,
    masked_mean,
    masked_sum,
    tempered,
    token_logprobs_and_entropy,
)
from training.policies.shared_prompts import completion_states
from training.rollouts.logprobs import TokenForward, batch_forward, batch_logprobs


class PPO(Algorithm):
    """The value head beside the policy (its own optimiser group, checkpointed), per-token
    advantages by GAE over its values before the update, and its value loss in every
    micro-batch; its settings are training.spec.algorithms.PPOSettings."""

    value_head: ValueHead

    def parameter_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        self.value_head = ValueHead(model.config.get_text_config().hidden_size)
        self.value_head.to(next(model.parameters()).device)
        return [{"params": list(self.value_head.parameters()),
                 "lr": self.settings.value_learning_rate}]

    def forward(self, model: torch.nn.Module, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, completion_length: int, temperature: float, *,
                entropy_grad: bool = False) -> TokenForward:
        return TokenForward(*logprobs_entropy_and_values(
            model, self.value_head, input_ids, attention_mask, completion_length, temperature,
            entropy_grad=entropy_grad))

    def advantages(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        """Per-token advantages and value targets, by GAE over the values the head gives
        before the update; the KL, when in the reward, is charged token by token."""
        config, batch, settings = self.config, scored.batch, self.settings
        rollouts = batch.rollouts
        started = time.perf_counter()
        before = batch_forward(run.model, rollouts, config, self.forward)  # before any update
        batch.old_logp, old_values = before.logp, before.values  # (N, T) each
        kl = None
        if run.reference is not None:
            batch.ref_logp = batch_logprobs(run.reference.model, rollouts, config)
            if config.kl_placement == "reward":
                kl = KL_ESTIMATORS[config.kl_estimator](batch.old_logp, batch.ref_logp)
        mask = rollouts.completion_mask.to(old_values.dtype)
        per_token = token_rewards(scored.rewards.to(mask.device), mask, kl,
                                  scored.beta)  # (N, T)
        advantages, returns = gae(per_token, old_values, mask, settings.gae_gamma,
                                  settings.gae_lambda)
        batch.advantages = whiten(advantages, mask)
        batch.targets = {"old_values": old_values, "returns": returns}
        return {"value/mean": masked_mean(old_values, mask).item(),
                "value/explained_variance": explained_variance(old_values, returns, mask).item(),
                "return/mean": masked_mean(returns, mask).item(),
                "time/values_s": time.perf_counter() - started}

    def extra_loss(self, forward: TokenForward, batch: StepBatch, rows: torch.Tensor,
                   mask: torch.Tensor, step_tokens: int) -> LossTerms:
        # Every completion token has a value target, truncated ones too: the whole mask.
        width = mask.shape[1]
        loss, stats = value_loss(forward.values, batch.targets["old_values"][rows, :width],
                                 batch.targets["returns"][rows, :width], mask,
                                 self.settings.value_clip, step_tokens=step_tokens)
        return LossTerms(self.settings.value_coef * loss, sums={"loss/value": loss.item()},
                         means=stats)

    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {"value_head": self.value_head.state_dict()}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, Any]) -> None:
        self.value_head.load_state_dict(tensors["value_head"])


class ValueHead(torch.nn.Module):
    """V(s_t): a linear map from the policy's last hidden state to a scalar, as TRL's value head
    but without dropout (it would make V_old and V of the same state disagree).

    The weights start small (std 1/(hidden_size + 1), as OpenRLHF's critic head) and the bias at
    0, so the first values are near 0: the critic starts out knowing nothing.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.score = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.normal_(self.score.weight, std=1 / (hidden_size + 1))
        torch.nn.init.zeros_(self.score.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (n, T, H) -> values (n, T) float32."""
        # In float32 even under bf16 autocast: the head is one (H, 1) matmul, and values are
        # regression targets whose small differences are the advantages.
        with torch.autocast(hidden.device.type, enabled=False):
            return self.score(hidden.float()).squeeze(-1)


def logprobs_entropy_and_values(model, head: ValueHead, input_ids: torch.Tensor,
                                attention_mask: torch.Tensor, completion_length: int,
                                temperature: float, *, entropy_grad: bool = False,
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probs, entropies and values of the last `completion_length` tokens, from the same
    forward pass of `model` (the value head shares its backbone).

    input_ids, attention_mask (n, P + T) -> logp, entropy, values (n, T). As in
    training.loops.policy_update.completion_logprobs, logits are divided by the sampling temperature
    and rows that share a prompt run it once. values[:, t] = V(s_t) is read from the last hidden
    state at position P − 1 + t, the same one whose logits give logp[:, t]: the state before
    token t is generated, which has not seen it.
    """
    states = completion_states(model, input_ids, attention_mask, completion_length, hidden=True)
    logp, entropy = token_logprobs_and_entropy(tempered(states.logits, temperature),
                                               input_ids[:, -completion_length:],
                                               entropy_grad=entropy_grad)
    return logp, entropy, head(states.hidden)


def token_rewards(rewards: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None,
                  beta: float = 0.0) -> torch.Tensor:
    """r_t = −β KL_t + [t = last] r: each sequence's reward on its last completion token, and
    the KL penalty (when given) on every completion token.

    rewards (n,), mask (n, T), kl (n, T) or None -> (n, T), 0 outside the mask.
    """
    mask = mask.to(rewards.dtype)
    length = mask.shape[1]
    positions = torch.arange(1, length + 1, device=mask.device, dtype=mask.dtype)  # (T,)
    last = (mask * positions).argmax(dim=1)  # (n,) index of each completion's last token
    per_token = torch.zeros_like(mask)  # (n, T)
    has_tokens = mask.amax(dim=1)  # (n,) an empty completion has no last token to reward
    per_token[torch.arange(mask.shape[0], device=mask.device), last] = rewards * has_tokens
    if kl is not None:
        per_token = per_token - beta * kl * mask
    return per_token


@torch.no_grad()
def gae(token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates Â_t and value targets R_t = Â_t + V_t.

    token_rewards, values, mask (n, T) -> advantages, returns (n, T), 0 outside the mask.
    Positions outside the mask are skipped: the recursion carries V_(t+1) and Â_(t+1) across
    them, so right padding behaves as the end of the episode (V = 0, Â = 0 after the last token)
    and whatever values or rewards padding holds never leak in. No gradient flows to `values`.
    """
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)  # (n, T)
    next_value = torch.zeros_like(values[:, 0])  # (n,) V_(t+1)
    next_advantage = torch.zeros_like(values[:, 0])  # (n,) Â_(t+1)
    for t in reversed(range(values.shape[1])):
        valid = mask[:, t]  # (n,)
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]  # (n,)
        advantage = delta + gamma * lam * next_advantage  # (n,)
        next_advantage = valid * advantage + (1 - valid) * next_advantage
        next_value = valid * values[:, t] + (1 - valid) * next_value
        advantages[:, t] = valid * advantage
    returns = (advantages + values) * mask  # (n, T)
    return advantages, returns


def whiten(advantages: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(Â − mean) / std over the tokens in `mask` (unbiased std, as TRL and veRL); (n, T) -> (n, T),
    0 outside the mask."""
    mask = mask.to(advantages.dtype)
    centred = (advantages - masked_mean(advantages, mask)) * mask  # (n, T)
    return centred * torch.rsqrt(_masked_variance(centred, mask) + eps)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, clip: float, step_tokens: int | None = None,
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped value loss of the module docstring, for one micro-batch.

    values (with gradient), old_values (V_old, before this step's updates), returns, mask
    (n, T). `clip` is ε_v; 0 means unclipped. `step_tokens` is the number of completion tokens
    in the whole step, so that the micro-batches' losses add up to the step's token mean; None
    means this micro-batch is the whole step. Returns the loss and the detached token mean of
    value/clip_fraction (tokens where the clipped term is the larger, so V gets no gradient).
    """
    mask = mask.to(values.dtype)
    per_token = (values - returns) ** 2  # (n, T)
    clipped_fraction = torch.zeros((), device=values.device)
    if clip > 0:
        clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)  # (n, T)
        clipped = (clipped_values - returns) ** 2  # (n, T)
        clipped_fraction = masked_mean((clipped > per_token).to(mask.dtype), mask)
        per_token = torch.max(per_token, clipped)
    tokens = mask.sum().item() if step_tokens is None else step_tokens
    loss = 0.5 * masked_sum(per_token, mask) / max(tokens, 1)
    return loss, {"value/clip_fraction": clipped_fraction.detach()}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       ) -> torch.Tensor:
    """1 − Var(R − V) / Var(R) over the tokens in `mask`: 1 when the values predict the returns,
    0 when they do no better than a constant, negative when worse; not finite when the returns
    do not vary, since then there is nothing to explain. values, returns, mask (n, T) -> ().
    """
    mask = mask.to(values.dtype)
    return 1 - _masked_variance(returns - values, mask) / _masked_variance(returns, mask)


def _masked_variance(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of x over the tokens in mask (0 for fewer than two tokens)."""
    centred = x - masked_mean(x, mask)
    return masked_sum(centred ** 2, mask) / (mask.sum() - 1).clamp(min=1)
