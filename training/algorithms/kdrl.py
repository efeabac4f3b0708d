"""KDRL (Xu et al., 2025, "KDRL: Post-Training Reasoning LLMs via Unified Knowledge Distillation
and Reinforcement Learning", arXiv 2506.02208): GRPO plus a reverse-KL pull towards a teacher,
on the policy's own rollouts.

The objective is GRPO's less the reverse KL from the student π_θ to a teacher π_T that shares
its tokenizer (the paper's Eq. 8; its GRPO has no reference KL, rlab's β stays available):

    J_KDRL(θ) = J_GRPO(θ) − β_KD · KL(π_θ || π_T)

The KL is estimated on the tokens o_i,t that the student sampled, from the teacher's log-probs
of the same tokens (no gradient), both at the rollouts' temperature:

    r_i,t  = log π_θ(o_i,t | q, o_i,<t) − log π_T(o_i,t | q, o_i,<t)
    k2_i,t = ½ r_i,t²               ∇k2 = r ∇log π_θ,             E_π_θ[∇k2] = ∇KL(π_θ || π_T)
    k3_i,t = e^(−r) + r − 1         ∇k3 = (1 − π_T/π_θ) ∇log π_θ, E_π_θ[∇k3] = ∇KL(π_T || π_θ)

so in the loss k2 descends the reverse KL, which is KDRL's choice and the paper's best, and k3
the forward KL (k1 = r would descend nothing: E_π_θ[∇log π_θ] = 0). Each token of each
completion adds to GRPO's clipped surrogate

    ℓ^KD_i,t = β_KD(s) · m_i · k_i,t

aggregated as the policy loss is (the run's loss_type: grpo's 1/N Σ_i 1/|o_i| Σ_t, dapo's token
mean, ...), over every completion token. Reward-guided KD keeps the term to some responses, m_i
from the rewards r_i and a threshold τ (a reward above τ is correct):

    none      m_i = 1
    response  m_i = [r_i ≤ τ]                       incorrect responses only
    group     m_i = [max_(j in i's group) r_j ≤ τ]  responses to prompts that none solved

A response left out still counts in the normaliser, so β_KD weighs a response's KL alike
whatever the others'. β_KD anneals over S steps: at step s (1 = the first),
p = min((s − 1)/S, 1) and

    constant  β_KD = β_start
    linear    β_KD = β_start + (β_end − β_start)·p      the paper's max(β_init − δ·t, β_min),
                                                       5e-3 to 1e-3 at δ = 5e-5: S = 80
    cosine    β_KD = β_end + (β_start − β_end)·(1 + cos πp)/2

The authors' code is not public; rules the paper leaves open follow it as we read it (the group
rule, the normaliser). Neither its top-k approximation of the KL (over the teacher's k likeliest
tokens, unstable in the paper) nor KD as a per-token reward is offered. With μ > 1 passes per
batch, the later passes' tokens were sampled by π_old, not π_θ, and the estimators' gradients
are those of the first pass only approximately.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from training.algorithms import grpo
from training.algorithms.aggregation import AGGREGATIONS, BatchShape
from training.algorithms.base import Algorithm, LossTerms, OnlineRun, ScoredBatch, StepBatch
from training.ops import KL_ESTIMATORS, kl_k3, masked_mean
from training.policies.loading import load_policy
from training.policies.references import ReferenceMismatch, frozen
from training.rollouts.logprobs import TokenForward, batch_logprobs

# How far β_KD has moved from its start to its end value, from the progress p in [0, 1].
SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda p: 0.0,
    "linear": lambda p: p,
    "cosine": lambda p: (1 - math.cos(math.pi * p)) / 2,
}


class KDRL(Algorithm):
    """GRPO's group-normalised advantages, and the KL to a frozen teacher in every micro-batch;
    its settings are training.spec.algorithms.KDRLSettings."""

    teacher: torch.nn.Module

    def __init__(self, config):
        super().__init__(config)
        self.steps_done = 0  # what the checkpoint keeps: β_KD's schedule goes on from it
        self.coef = 0.0  # β_KD of the step under way
        self._recorded: torch.Tensor | None = None  # (N,) rows whose first-pass KL is shown

    def setup(self, run: OnlineRun) -> None:
        bf16 = self.config.dtype == "bfloat16"
        self.teacher = load_teacher(self.settings.kd_teacher, run.tokenizer, device=run.device,
                                    dtype=torch.bfloat16 if bf16 else torch.float32)
        run.reporter.log(f"KDRL teacher: {self.settings.kd_teacher}")

    def estimate(self, rewards: torch.Tensor, prompt_ids: list[str]) -> torch.Tensor:
        return grpo.compute_advantages(rewards, self.config.group_size)

    def advantages(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        """GRPO's advantages; the teacher's log-probs of the step's tokens and each response's
        m_i, for the loss; β_KD of this step."""
        metrics = super().advantages(scored, run)
        started = time.perf_counter()
        settings, batch = self.settings, scored.batch
        self.coef = kd_coefficient(self.steps_done + 1, settings.kd_schedule,
                                   settings.kd_coef_start, settings.kd_coef_end,
                                   settings.kd_anneal_steps or self.config.max_steps - 1)
        teacher_logp = batch_logprobs(self.teacher, batch.rollouts, self.config)  # (N, T)
        weights = kd_response_weights(scored.rewards, self.config.group_size,
                                      settings.kd_reward_guided,
                                      settings.kd_reward_threshold)  # (N,)
        batch.targets["teacher_logp"] = teacher_logp
        batch.targets["kd_weight"] = weights.to(teacher_logp.device)
        batch.token_views["teacher_kl"] = torch.zeros_like(teacher_logp)
        self._recorded = torch.zeros(len(weights), dtype=torch.bool, device=teacher_logp.device)
        metrics["kd/coef"] = self.coef
        if settings.kd_reward_guided != "none":
            metrics["kd/applied_fraction"] = weights.mean().item()
        metrics["time/teacher_s"] = time.perf_counter() - started
        return metrics

    def extra_loss(self, forward: TokenForward, batch: StepBatch, rows: torch.Tensor,
                   mask: torch.Tensor, step_tokens: int) -> LossTerms:
        width = mask.shape[1]
        mask = mask.to(forward.logp.dtype)
        teacher_logp = batch.targets["teacher_logp"][rows, :width]  # (n, T')
        sequences = batch.rollouts.input_ids.shape[0]
        shape = BatchShape(sequences=sequences, tokens=step_tokens,
                           max_completion_length=self.config.max_new_tokens,
                           micro_batches=math.ceil(sequences / self.config.micro_batch_size))
        term = kd_loss(forward.logp, teacher_logp, batch.targets["kd_weight"][rows], mask,
                       estimator=self.settings.kd_estimator, loss_type=self.config.loss_type,
                       shape=shape)
        self._record(batch, rows, forward.logp.detach(), teacher_logp, mask)
        return LossTerms(self.coef * term, sums={"kd/loss": term.item()})

    def _record(self, batch: StepBatch, rows: torch.Tensor, logp: torch.Tensor,
                teacher_logp: torch.Tensor, mask: torch.Tensor) -> None:
        """The per-token KL of rows seen for the first time this step, from the policy before
        the step's update, for the token view and kd/kl."""
        fresh = ~self._recorded[rows]  # (n,)
        if fresh.any():
            kl = kl_k3(logp, teacher_logp) * mask  # (n, T')
            batch.token_views["teacher_kl"][rows[fresh], :mask.shape[1]] = kl[fresh]
            self._recorded[rows] = True

    def after_update(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        self.steps_done += 1
        batch = scored.batch
        mask = batch.rollouts.completion_mask
        kl = batch.token_views["teacher_kl"]  # (N, T)
        return {"kd/kl": masked_mean(kl, mask.to(kl.dtype)).item()}

    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"kdrl": {"steps_done": self.steps_done}}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, Any]) -> None:
        self.steps_done = int(state["kdrl"]["steps_done"])


def kd_coefficient(step: int, schedule: str, start: float, end: float, steps: int) -> float:
    """β_KD at `step` (1 = the first) of the module docstring, annealed over `steps` steps
    (none: β_start).

    >>> [round(kd_coefficient(s, "linear", 5e-3, 1e-3, 80), 6) for s in (1, 41, 81, 500)]
    [0.005, 0.003, 0.001, 0.001]
    >>> [round(kd_coefficient(s, "cosine", 1.0, 0.0, 4), 4) for s in (1, 2, 3, 5)]
    [1.0, 0.8536, 0.5, 0.0]
    """
    progress = min((step - 1) / steps, 1.0) if steps > 0 else 0.0
    return start + (end - start) * SCHEDULES[schedule](progress)


def kd_response_weights(rewards: torch.Tensor, group_size: int, rule: str,
                        threshold: float) -> torch.Tensor:
    """m_i of the module docstring: 1 for a response the KL to the teacher applies to, else 0.

    rewards (N,), ordered group by group -> (N,) float.

    >>> rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    >>> kd_response_weights(rewards, 2, "response", 0.0).tolist()
    [0.0, 1.0, 1.0, 1.0]
    >>> kd_response_weights(rewards, 2, "group", 0.0).tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    correct = rewards > threshold  # (N,)
    if rule == "none":
        keep = torch.ones_like(correct)
    elif rule == "response":
        keep = ~correct
    elif rule == "group":
        solved = correct.view(-1, group_size).any(dim=1, keepdim=True)  # (B, 1)
        keep = (~solved).expand(-1, group_size).reshape(-1)  # (N,)
    else:
        raise ValueError(f"unknown reward-guided KD rule {rule!r}")
    return keep.float()


def kd_loss(logp: torch.Tensor, teacher_logp: torch.Tensor, weights: torch.Tensor,
            mask: torch.Tensor, *, estimator: str, loss_type: str,
            shape: BatchShape | None = None) -> torch.Tensor:
    """The KL to the teacher, m_i · k_i,t aggregated as the policy loss is, for one micro-batch
    (before β_KD).

    logp (with gradient), teacher_logp, mask (n, T); weights (n,), m_i. `shape` describes the
    whole step for the aggregation; None means this micro-batch is the whole step.
    """
    mask = mask.to(logp.dtype)
    if shape is None:
        shape = BatchShape(sequences=mask.shape[0], tokens=int(mask.sum().item()),
                           max_completion_length=mask.shape[1], micro_batches=1)
    per_token = KL_ESTIMATORS[estimator](logp, teacher_logp) * weights[:, None]  # (n, T)
    return AGGREGATIONS[loss_type](per_token, mask, shape)


def load_teacher(ref: str, tokenizer, *, device: torch.device,
                 dtype: torch.dtype) -> torch.nn.Module:
    """π_T, frozen (eval mode, dropout off, no gradients) on the run's device. ModelNotFound if
    `ref` names nothing loadable; ReferenceMismatch unless it shares the policy's vocabulary
    (`tokenizer`'s)."""
    teacher, teacher_tokenizer = load_policy(ref, dtype=dtype, device=device)
    problem = vocabulary_mismatch(tokenizer.get_vocab(), teacher_tokenizer.get_vocab(),
                                  teacher.get_output_embeddings().weight.shape[0])
    if problem:
        raise ReferenceMismatch(
            f"The KDRL teacher {ref!r} does not share the policy's vocabulary: {problem}, so "
            f"its log-probs of the policy's tokens mean nothing. Pick a teacher with the "
            f"policy's tokenizer: a model of the same family, or a checkpoint of the policy.")
    return frozen(teacher)


def vocabulary_mismatch(policy: dict[str, int], teacher: dict[str, int],
                        teacher_logits: int) -> str | None:
    """Why a teacher with this token → id mapping, scoring `teacher_logits` ids, cannot score
    the policy's tokens; None if it can.

    >>> vocabulary_mismatch({"a": 0, "b": 1}, {"a": 0, "b": 1}, 64)
    >>> vocabulary_mismatch({"a": 0, "b": 1}, {"a": 1, "b": 0}, 64)
    "its tokenizer numbers tokens differently ('a' is 1, the policy's is 0)"
    """
    if len(teacher) != len(policy):
        return f"its tokenizer has {len(teacher)} tokens, the policy's {len(policy)}"
    for token, index in policy.items():
        if teacher.get(token) != index:
            return (f"its tokenizer numbers tokens differently ({token!r} is "
                    f"{teacher.get(token)}, the policy's is {index})")
    if teacher_logits < len(policy):
        return f"it scores {teacher_logits} token ids, the policy's tokenizer has {len(policy)}"
    return None
