"""SPO (Xu & Ding, 2025, "Single-stream Policy Optimization", arXiv 2509.13232): one completion
per prompt (G = 1), and a baseline that persists across steps instead of a group's mean.

A value tracker keeps, for every prompt x, discounted counts α(x), β(x) of successes and failures:
a Beta(α, β) belief about x's success rate. Its mean is the baseline, read before the step's own
reward is added, and the advantages are normalised over the whole batch:

    v̂(x) = α(x) / (α(x) + β(x))
    Â_i  = r_i − v̂(x_i),   then   Â ← (Â − mean(Â)) / (std(Â) + eps)

After the step's policy update, each prompt's old evidence is discounted by how far the policy has
moved since the prompt was last seen (KL-adaptive forgetting), and the new reward added:

    D(x) = 1/|y| Σ_t |log π_then(y_t | x, y_<t) − log π_now(y_t | x, y_<t)|
    ρ(x) = clip(2^(−D(x)/D_half), ρ_min, ρ_max)
    α(x) ← ρ(x)·α(x) + r,    β(x) ← ρ(x)·β(x) + (1 − r)

where y is x's previous completion, π_then the policy right after the step that sampled y (its
log-probs are stored with y, see `LastCompletions`) and π_now the policy right after this step's
update; D is a cheap proxy for the KL between the two. A prompt seen for the first time has
D = 0, so ρ = ρ_max. Evidence updated again and again at ρ = ρ_min settles at a total weight
α + β = N₀ = 1/(1 − ρ_min), and that is the weight the prior starts with:

    α(x) = N₀ (s + ½)/(n + 1),   β(x) = N₀ (n − s + ½)/(n + 1)     from n offline samples, s passed
    α(x) = β(x) = ½                                                   without offline samples

Prioritised sampling draws prompts without replacement with probability ∝

    w(x) = sqrt(v̂(x) (1 − v̂(x))) + ε,   ε = 0.05

most for prompts whose outcome is uncertain (v̂ near ½), never zero. The policy loss is GRPO's
clipped surrogate (training.algorithms.grpo.compute_loss) with its aggregation and KL options.

Everything here follows the reference implementation, verl-recipe's spo/spo_ray_trainer.py
(`RayPPOTrainer.fit` for the prior, the weights and the advantages; `_get_spo_rho` for D and ρ),
with its config/spo_trainer.yaml defaults: D_half = 0.06, ρ_min = 0.875 (`rho.clip_lower`),
ρ_max = 0.96, 8 offline samples per prompt, eps = 1e-8. The reference's rewards are 0 or 1 (its
scorer clamps negative scores to 0); with other rewards v̂ is the discounted mean reward, and the
weights clamp it into [0, 1] first.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from training.algorithms.base import Algorithm, OnlineRun, ScoredBatch
from training.ops import masked_mean
from training.rollouts.generation import Rollouts
from training.rollouts.logprobs import batch_logprobs
from training.rollouts.scoring import score_rollouts
from training.spec.config import RunConfig

RHO_MIN = 0.875  # ρ_min: the reference's rho.clip_lower; RunConfig sets only ρ_max
EXPLORATION = 0.05  # ε: the floor of every prompt's sampling weight (EXPLORATION_EPSILON)
NO_SPREAD = 1e-6  # a batch whose r − v̂ varies less than this has no signal
UNSEEN = 0.5  # α = β of a prompt with no prior and no update yet (the reference's offline_N = 0)


@dataclass(frozen=True)
class SPOConfig:
    half_life: float = 0.06  # D_half: the log-prob change D at which old evidence counts half
    rho_min: float = RHO_MIN  # ρ_min: old evidence keeps at least this weight per visit
    rho_max: float = 0.96  # ρ_max: ... and at most this, so it always fades
    prior_samples: int = 0  # n: offline completions per prompt for the prior (0: α = β = ½)
    std_eps: float = 1e-8  # eps: keeps Â finite when every r − v̂ in the batch is alike

    @classmethod
    def from_run_config(cls, config: RunConfig) -> SPOConfig:
        # A ρ_max below the reference's ρ_min bounds ρ on both sides.
        settings = config.algorithm_settings  # training.spec.algorithms.SPOSettings
        return cls(half_life=settings.spo_half_life,
                   rho_min=min(RHO_MIN, settings.spo_max_forgetting),
                   rho_max=settings.spo_max_forgetting, prior_samples=settings.spo_prior_samples)

    @property
    def prior_weight(self) -> float:
        """N₀ = 1/(1 − ρ_min): α + β of a primed prompt (unbounded when ρ_min = 1)."""
        return 1.0 / (1.0 - self.rho_min) if self.rho_min < 1 else math.inf


class SPO(Algorithm):
    """The value tracker as baseline, its KL-adaptive forgetting after each update, and the
    prior from offline samples; the tracker and each prompt's last completion are checkpointed."""

    def __init__(self, config: RunConfig):
        super().__init__(config)
        self.spo = SPOConfig.from_run_config(config)
        self.tracker = ValueTracker(self.spo)
        self.prompt_values = self.tracker  # for the spo_priority sampler
        self.last_completions = LastCompletions()

    def prepare(self, run: OnlineRun) -> None:
        """Prime every prompt's tracker from n completions of the initial policy."""
        n = self.spo.prior_samples
        if not n:
            return
        config = dataclasses.replace(self.config, group_size=n)  # scoring repeats by group
        pool = list(run.task.examples)
        started = time.perf_counter()
        for start in range(0, len(pool), config.prompts_per_step):
            chunk = pool[start:start + config.prompts_per_step]
            rollouts = run.backend.generate(chunk, n)
            per_function = score_rollouts(run.reward_functions, chunk, rollouts, config)
            rewards = sum(run.weights[k] * v for k, v in per_function.items())  # (b*n,)
            for example, row in zip(chunk, rewards.view(-1, n)):
                self.tracker.prime(example.prompt_id, successes=int((row > 0).sum()), trials=n)
        run.reporter.log(f"SPO prior: {n} completions for each of {len(pool)} prompts in "
                         f"{time.perf_counter() - started:.1f} s")

    def advantages(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        metrics = super().advantages(scored, run)
        metrics["spo/baseline_mean"] = self.tracker.value(scored.prompt_ids).mean().item()
        return metrics

    def estimate(self, rewards: torch.Tensor, prompt_ids: list[str]) -> torch.Tensor:
        baselines = self.tracker.value(prompt_ids)  # (N,) v̂, before this step's rewards
        return compute_advantages(rewards, baselines, self.spo.std_eps)

    def after_update(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        """The tracker's update: D on each prompt's previous completion (its log-probs then,
        against the policy now), then α, β with ρ(D)."""
        ids, rollouts = scored.prompt_ids, scored.batch.rollouts
        change = torch.zeros(len(ids))  # (N,) D; 0 for a prompt seen the first time
        seen = [i for i, prompt_id in enumerate(ids) if prompt_id in self.last_completions]
        if seen:
            past = self.last_completions.batch([ids[i] for i in seen],
                                               run.tokenizer.pad_token_id, run.device)
            now = batch_logprobs(run.model, past.rollouts, self.config)  # (n, T)
            change[seen] = log_prob_change(past.logprobs, now,
                                           past.rollouts.completion_mask).cpu()
        self.last_completions.remember(ids, rollouts.input_ids, rollouts.attention_mask,
                                       rollouts.completion_mask,
                                       batch_logprobs(run.model, rollouts, self.config))
        rho = self.tracker.update(ids, scored.rewards, change)
        return {"spo/log_prob_change": change.mean().item(), "spo/rho": rho.mean().item(),
                "spo/first_seen_fraction": 1 - len(seen) / len(ids)}

    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        # token ids and log-probs of the last completions: too bulky for the JSON state
        return ({"spo_tracker": self.tracker.state_dict()},
                {"spo_completions": self.last_completions.state_dict()})

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state["spo_tracker"])
        self.last_completions.load_state_dict(tensors["spo_completions"])


def compute_advantages(rewards: torch.Tensor, baselines: torch.Tensor,
                       eps: float = 1e-8) -> torch.Tensor:
    """Â = r − v̂, normalised over the whole batch: rewards, baselines (N,) -> advantages (N,).

    The std is the unbiased sample std, as in the reference (torch's default). A batch without
    spread (one completion, or r − v̂ the same for all) carries no signal and gets advantages
    of exactly 0: dividing its float rounding noise by eps would blow it up to order 1.
    """
    centred = rewards - baselines  # (N,)
    std = centred.std() if centred.numel() > 1 else centred.new_zeros(())
    if std < NO_SPREAD:
        return torch.zeros_like(centred)
    return (centred - centred.mean()) / (std + eps)


def log_prob_change(then: torch.Tensor, now: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """D = the mean over a completion's tokens of |log π_then − log π_now|.

    then, now, mask (B, T) -> D (B,); a row with no tokens (mask all 0) gives 0.
    """
    return masked_mean((then - now).abs(), mask, dim=1)


def forgetting_factor(change: torch.Tensor, half_life: float, rho_min: float,
                      rho_max: float) -> torch.Tensor:
    """ρ = clip(2^(−D/D_half), ρ_min, ρ_max), per prompt: D (B,) -> ρ (B,)."""
    return torch.pow(2.0, -change / half_life).clamp(min=rho_min, max=rho_max)


def priority_weights(values: torch.Tensor) -> torch.Tensor:
    """w = sqrt(v̂ (1 − v̂)) + ε, with v̂ clamped into [0, 1]: values (M,) -> weights (M,)."""
    v = values.clamp(0.0, 1.0)
    return (v * (1.0 - v)).sqrt() + EXPLORATION


class ValueTracker:
    """α(x), β(x) for every prompt x met so far (by prompt id), and how many completions of x
    have updated them (the reference's prompt2sampled_number, for metrics)."""

    def __init__(self, config: SPOConfig = SPOConfig()):
        self.config = config
        self.alpha: dict[str, float] = {}
        self.beta: dict[str, float] = {}
        self.visits: dict[str, int] = {}

    def __contains__(self, prompt_id: str) -> bool:
        """Whether x has a prior or an update; any other prompt counts as α = β = ½."""
        return prompt_id in self.alpha

    def prime(self, prompt_id: str, successes: float, trials: int) -> None:
        """Start x's belief from `trials` ≥ 1 offline completions of which `successes` passed
        (the reference counts a reward above 0 as a pass): α + β = N₀, α/(α + β) =
        (s + ½)/(n + 1)."""
        if trials < 1:
            raise ValueError("a prior needs at least one offline completion")
        scale = self.config.prior_weight / (trials + 1)
        self.alpha[prompt_id] = scale * (successes + 0.5)
        self.beta[prompt_id] = scale * (trials - successes + 0.5)

    def value(self, prompt_ids: Sequence[str]) -> torch.Tensor:
        """v̂ = α/(α + β) of each prompt: the baselines (B,)."""
        return torch.tensor([self._value(pid) for pid in prompt_ids], dtype=torch.float32)

    def priority(self, prompt_ids: Sequence[str]) -> torch.Tensor:
        """Sampling weights (M,) of the prompts: sqrt(v̂ (1 − v̂)) + ε."""
        return priority_weights(self.value(prompt_ids))

    def update(self, prompt_ids: Sequence[str], rewards: torch.Tensor,
               log_prob_change: torch.Tensor) -> torch.Tensor:
        """Discount each prompt's evidence by ρ(D) and add its reward: rewards, D (B,) -> ρ (B,).

        Call after the step's policy update, with the rewards as scored (no KL folded in). A
        prompt that appears twice in the batch is updated twice, in order, so both completions
        count (the reference keeps only the last). Rewards are clipped to [0, 1] first, as the
        reference's scorer does: α and β count successes and failures.
        """
        c = self.config
        rho = forgetting_factor(log_prob_change.float().cpu(), c.half_life, c.rho_min, c.rho_max)
        clipped = rewards.float().cpu().clamp(0.0, 1.0)  # (B,)
        for pid, reward, keep in zip(prompt_ids, clipped.tolist(), rho.tolist(), strict=True):
            alpha, beta = self.alpha.get(pid, UNSEEN), self.beta.get(pid, UNSEEN)
            self.alpha[pid] = keep * alpha + reward
            self.beta[pid] = keep * beta + (1.0 - reward)
            self.visits[pid] = self.visits.get(pid, 0) + 1
        return rho

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": dict(self.alpha), "beta": dict(self.beta), "visits": dict(self.visits)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha = {pid: float(a) for pid, a in state["alpha"].items()}
        self.beta = {pid: float(b) for pid, b in state["beta"].items()}
        self.visits = {pid: int(n) for pid, n in state["visits"].items()}

    def _value(self, prompt_id: str) -> float:
        alpha, beta = self.alpha.get(prompt_id, UNSEEN), self.beta.get(prompt_id, UNSEEN)
        return alpha / (alpha + beta)


@dataclass(frozen=True)
class StoredCompletions:
    """Stored completions as the trainer's Rollouts, with the log-probs they had when stored."""

    rollouts: Rollouts  # (n rows) texts empty, none truncated: D needs only the tokens
    logprobs: torch.Tensor  # (n, T) log π_then of each completion token, 0 on padding


class LastCompletions:
    """Each prompt's latest completion and its per-token log-probs under the policy right after
    the step that sampled it: what D(x) is measured on (the reference's prompt2protodata and
    prompt2log_probs). Token ids and log-probs are kept as plain lists, so the state is JSON."""

    def __init__(self) -> None:
        # prompt id -> (prompt token ids, completion token ids, completion log-probs)
        self.entries: dict[str, tuple[list[int], list[int], list[float]]] = {}

    def __contains__(self, prompt_id: str) -> bool:
        return prompt_id in self.entries

    def remember(self, prompt_ids: Sequence[str], input_ids: torch.Tensor,
                 attention_mask: torch.Tensor, completion_mask: torch.Tensor,
                 logprobs: torch.Tensor) -> None:
        """Keep row i as prompt_ids[i]'s latest completion, replacing the one before.

        input_ids, attention_mask (N, P + T) and completion_mask (N, T) as in the trainer's
        Rollouts; logprobs (N, T) under the policy as it is now, after the step's update.
        """
        prompt_length = input_ids.shape[1] - completion_mask.shape[1]
        input_ids, attention_mask = input_ids.cpu(), attention_mask.cpu()
        completion_mask, logprobs = completion_mask.cpu(), logprobs.detach().float().cpu()
        for i, pid in enumerate(prompt_ids):
            prompt = input_ids[i, :prompt_length][attention_mask[i, :prompt_length].bool()]
            n = int(completion_mask[i].sum())
            completion = input_ids[i, prompt_length:prompt_length + n]
            self.entries[pid] = (prompt.tolist(), completion.tolist(), logprobs[i, :n].tolist())

    def batch(self, prompt_ids: Sequence[str], pad_token_id: int,
              device: torch.device | str = "cpu") -> StoredCompletions:
        """The stored completions of `prompt_ids` (at least one, each in here), padded into one
        batch."""
        entries = [self.entries[pid] for pid in prompt_ids]
        width_p = max(len(prompt) for prompt, _, _ in entries)
        width_t = max(len(completion) for _, completion, _ in entries)
        n = len(entries)
        input_ids = torch.full((n, width_p + width_t), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((n, width_p + width_t), dtype=torch.long)
        completion_mask = torch.zeros((n, width_t), dtype=torch.long)
        logprobs = torch.zeros((n, width_t))
        for i, (prompt, completion, logp) in enumerate(entries):
            start, end = width_p - len(prompt), width_p + len(completion)
            input_ids[i, start:end] = torch.tensor(prompt + completion, dtype=torch.long)
            attention_mask[i, start:end] = 1
            completion_mask[i, :len(completion)] = 1
            logprobs[i, :len(completion)] = torch.tensor(logp)
        rollouts = Rollouts(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
            completion_mask=completion_mask.to(device), lengths=completion_mask.sum(dim=1),
            truncated=torch.zeros(n, dtype=torch.bool), texts=[""] * n)
        return StoredCompletions(rollouts=rollouts, logprobs=logprobs.to(device))

    def state_dict(self) -> dict[str, Any]:
        return {"entries": {pid: [list(p), list(c), list(l)]
                            for pid, (p, c, l) in self.entries.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.entries = {pid: (list(p), list(c), [float(x) for x in l])
                        for pid, (p, c, l) in state["entries"].items()}
