"""DPH-RL (Li et al., 2025, "The Choice of Divergence: A Neglected Key to Mitigating Diversity
Collapse in Reinforcement Learning with Verifiable Reward", arXiv 2509.07430): Diversity-Preserving
Hybrid RL. GRPO without a KL term on the prompts the initial policy π₀ does not yet solve, and a
mass-covering f-divergence to π₀ on samples of π₀ itself for those it does: the divergence
rehearses what the model already knew instead of narrowing it, and needs no online reference
model, only log π₀ stored with the samples.

Before training (`prepare`), π₀ samples k completions of every training prompt. A prompt all k
of whose completions pass (the task's own reward above 0) is solved, D_pef; the rest, D_exp,
are the prompts the policy-gradient steps draw from. π₀ then samples each solved prompt again,
and its passing completions y are stored with log π₀(y_t | x, y_<t) per token. The loss is

    L = L_GRPO(D_exp) + η · D_f,    D_f = Σ_{y ∈ S, t} f(u_t) / Σ_{y ∈ S} |y|,
    u_t = π_θ(y_t | x, y_<t) / π₀(y_t | x, y_<t)

over the step's batch S of stored samples: a per-token sample mean of E_{π₀}[f(π_θ/π₀)], which is
D_f(π_θ ‖ π₀) = Σ π₀ f(π_θ/π₀). L_GRPO is rlab's clipped surrogate with group-normalised
advantages and no KL (β = 0 is required). The generators f, each convex with f(1) = 0 = f'(1):

    forward KL   f(u) = (u − 1) − log u                        D_f = KL(π₀ ‖ π_θ)
    JS           f(u) = u log u − (u + 1) log((u + 1)/2)      Jensen–Shannon (×2), f(0) = log 2
    α            f(u) = (u^(1−α) − (1 − α) u − α) / (α (α − 1)),  0 < α < 1

The α-divergence tends to the forward KL's generator as α → 1 and to the reverse KL's,
u log u − u + 1, as α → 0.

Where the paper leaves things open, this follows the authors' code (github.com/seamoke/DPH-RL,
a verl fork: `dp_actor.update_policy`, `core_algos.js_low_var` and `alpha_divergence_f`,
`ray_trainer.fit`, scripts/llama/*.sh):
- u is per token, and D_f is the token mean over the stored samples (`loss_agg_mode`
  token-mean). The forward KL is verl's `low_var_kl` with π₀ as the sampling policy, clamps
  included: log u is clipped to [−20, 20] and f(u) to at most 10 (a token that far off gets no
  gradient). JS is the code's `js_low_var` (its "JS generator"; its `js` mode instead needs a
  reference model), and neither it nor α is clamped.
- Defaults: η = 0.01 (`sft_loss_coeff`), forward KL (`sft_loss_mode`), α = 0.2
  (`alpha_coeff`), one stored sample drawn per solved prompt and kept only if it passes
  (`get_correct_data_tensor.sh`, n = 1). k = 8 as in the paper and the sampling script (the
  split script, exact_correct_id.py, reads the first 4 of them).
- The code cuts the stored samples into chunks of 256, shuffles the chunks and adds one to each
  step's batch of 2,048 rollouts; here each step takes the next `dph_samples_per_step` of a
  seeded shuffled cycle over all of them, and adds η·D_f to the step's loss once per
  optimisation pass (`auxiliary_backward`). The code runs the stored samples through the same
  mini-batches as the rollouts, so their weight against the policy loss also depends on their
  share of the batch; here the sum is the paper's L_GRPO + η·D_f.
- A prompt the initial policy solves every time leaves the RL prompts. When π₀ solves every
  prompt, RL keeps them all (it would have none); when it solves none, there is nothing to
  store and the run is GRPO without KL. Both are logged as warnings.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from training.algorithms import grpo
from training.algorithms.base import Algorithm, OnlineRun, ScoredBatch
from training.rollouts.generation import Rollouts, concat_rollouts
from training.rollouts.logprobs import (
    autocast,
    batch_logprobs,
    completion_forward,
    micro_batch,
    micro_batch_order,
)
from training.rollouts.scoring import score_rollouts
from training.spec.config import RunConfig
from training.spec.prompt_dataset import PromptDataset
from training.spec.tasks import Example

LOG_RATIO_CLAMP = 20.0  # verl's low_var_kl: log u clipped to ±20 ...
FORWARD_KL_CLAMP = 10.0  # ... and the per-token KL to at most 10


def forward_kl(log_u: torch.Tensor, alpha: float = 0.0) -> torch.Tensor:
    """f(u) = (u − 1) − log u, with verl's clamps; `alpha` is unused.

    >>> [round(v, 6) for v in forward_kl(torch.tensor([2.0, 0.5, 1.0]).log()).tolist()]
    [0.306853, 0.193147, 0.0]
    """
    log_u = log_u.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (log_u.exp() - 1 - log_u).clamp(max=FORWARD_KL_CLAMP)


def jensen_shannon(log_u: torch.Tensor, alpha: float = 0.0) -> torch.Tensor:
    """f(u) = u log u − (u + 1) log((u + 1)/2), with log(u + 1) = softplus(log u) so that small
    u stay exact; `alpha` is unused.

    >>> [round(v, 6) for v in jensen_shannon(torch.tensor([2.0, 0.5, 1.0]).log()).tolist()]
    [0.169899, 0.08495, 0.0]
    """
    u = log_u.exp()
    return u * log_u - (u + 1) * (F.softplus(log_u) - math.log(2.0))


def alpha_divergence(log_u: torch.Tensor, alpha: float) -> torch.Tensor:
    """f(u) = (u^(1−α) − (1 − α) u − α) / (α (α − 1)), 0 < α < 1. At α = ½ it is 2 (√u − 1)².

    >>> [round(v, 6) for v in alpha_divergence(torch.tensor([4.0, 0.25]).log(), 0.5).tolist()]
    [2.0, 0.5]
    """
    u = log_u.exp()
    return (((1 - alpha) * log_u).exp() - (1 - alpha) * u - alpha) / (alpha * (alpha - 1))


# dph_generator -> f as a function of log u (training.spec.algorithms.DPHSettings names them)
GENERATORS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "forward_kl": forward_kl,
    "js": jensen_shannon,
    "alpha": alpha_divergence,
}


def divergence_loss(logp: torch.Tensor, initial_logp: torch.Tensor, mask: torch.Tensor,
                    generator: str, alpha: float, eta: float, total_tokens: int,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """η · Σ f(u) / total_tokens over one micro-batch of stored samples, its share of the step's
    η·D_f when `total_tokens` counts the tokens of all of them; and the per-token log u.

    logp (n, T) under π_θ with gradient, initial_logp (n, T) log π₀, mask (n, T) their tokens.

    >>> logp = torch.tensor([[math.log(2), -math.log(2)], [0.0, 5.0]], requires_grad=True)
    >>> loss, _ = divergence_loss(logp, torch.zeros(2, 2), torch.tensor([[1, 1], [1, 0]]),
    ...                           "forward_kl", 0.2, eta=0.3, total_tokens=3)
    >>> round(loss.item(), 6)  # 0.3 · ((1 − log 2) + (−½ + log 2) + 0) / 3
    0.05
    """
    log_u = logp.float() - initial_logp.float()  # (n, T)
    per_token = GENERATORS[generator](log_u, alpha)  # (n, T)
    per_token = torch.where(mask.bool(), per_token, 0.0)
    return eta * per_token.sum() / max(total_tokens, 1), log_u


def split_solved(examples: Sequence[Example], passed: torch.Tensor,
                 samples: int) -> tuple[list[Example], list[Example]]:
    """The prompts all `samples` of whose completions passed (D_pef), and the rest (D_exp).

    passed (B*k,) bool, completions group by group, k = `samples` per example.

    >>> ex = [Example(str(i), "", {}) for i in range(3)]
    >>> solved, rest = split_solved(ex, torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool), 2)
    >>> [e.prompt_id for e in solved], [e.prompt_id for e in rest]
    (['0'], ['1', '2'])
    """
    every = passed.view(-1, samples).all(dim=1).tolist()  # (B,)
    solved = [e for e, ok in zip(examples, every, strict=True) if ok]
    rest = [e for e, ok in zip(examples, every, strict=True) if not ok]
    return solved, rest


def passes(reward_functions: dict[str, Any], examples: list[Example], rollouts: Rollouts,
           config: RunConfig) -> torch.Tensor:
    """Which completions pass (B*G,) bool, G = config.group_size: the task's own reward above
    0, as SPO's prior and the difficulty filter count a pass."""
    scores = score_rollouts(reward_functions, examples, rollouts, config)
    return sum(scores.values()) > 0


@dataclass
class StoredSamples:
    """π₀'s passing completions of the solved prompts, in the trainer's Rollouts layout (on
    the CPU), with log π₀ of each completion token."""

    input_ids: torch.Tensor  # (S, P + T)
    attention_mask: torch.Tensor  # (S, P + T)
    completion_mask: torch.Tensor  # (S, T)
    initial_logp: torch.Tensor  # (S, T) log π₀, 0 on padding

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: list[int], device: torch.device) -> tuple[Rollouts, torch.Tensor]:
        """Rows `rows` as Rollouts on `device`, and their log π₀ (n, T)."""
        index = torch.tensor(rows, dtype=torch.long)
        completion_mask = self.completion_mask[index]
        rollouts = Rollouts(
            input_ids=self.input_ids[index].to(device),
            attention_mask=self.attention_mask[index].to(device),
            completion_mask=completion_mask.to(device), lengths=completion_mask.sum(dim=1),
            truncated=torch.zeros(len(rows), dtype=torch.bool), texts=[""] * len(rows))
        return rollouts, self.initial_logp[index].to(device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "completion_mask": self.completion_mask, "initial_logp": self.initial_logp}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> StoredSamples:
        return cls(**state)


class RehearsalOrder:
    """Which stored samples each step rehearses: consecutive runs of a shuffled order of all S,
    a new order (seeded by the run's seed and the cycle's number) each time one is used up, so
    every sample comes back equally often and a resumed run picks the same ones."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self.cycle, self.position = 0, 0

    def take(self, n: int) -> list[int]:
        """The next n sample indices (with repeats only when n > S)."""
        rows: list[int] = []
        while len(rows) < n:
            order = self._order(self.cycle)
            chunk = order[self.position:self.position + n - len(rows)]
            rows.extend(chunk)
            self.position += len(chunk)
            if self.position == self.size:
                self.cycle, self.position = self.cycle + 1, 0
        return rows

    def _order(self, cycle: int) -> list[int]:
        order = list(range(self.size))
        random.Random(f"dph-rl:{self.seed}:{cycle}").shuffle(order)
        return order

    def state_dict(self) -> dict[str, int]:
        return {"cycle": self.cycle, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.cycle, self.position = int(state["cycle"]), int(state["position"])


class DPHRL(Algorithm):
    """GRPO's advantages on the unsolved prompts, η·D_f to π₀ on its stored samples of the
    solved ones; its settings are training.spec.algorithms.DPHSettings."""

    def __init__(self, config: RunConfig):
        super().__init__(config)
        self.solved: list[str] = []  # prompt ids of D_pef
        self.probed = 0  # prompts in the initial sampling pass
        self.stored: StoredSamples | None = None
        self.order: RehearsalOrder | None = None
        self.step_rows: list[int] = []  # this step's stored samples

    def prepare(self, run: OnlineRun) -> None:
        """The split of the task's prompts by π₀'s success, and π₀'s stored samples."""
        settings, config = self.settings, self.config
        started = time.perf_counter()
        examples = list(run.task.examples)
        k = settings.dph_probe_samples
        solved: list[Example] = []
        for chunk in _chunks(examples, config.prompts_per_step):
            rollouts = run.backend.generate(chunk, k)
            passed = passes(run.task.reward_functions, chunk, rollouts,
                            dataclasses.replace(config, group_size=k))  # (b*k,)
            solved += split_solved(chunk, passed, k)[0]
        self.solved, self.probed = [e.prompt_id for e in solved], len(examples)
        self._store(run, solved)
        run.reporter.log(
            f"DPH-RL: the initial policy passed all {k} samples of {len(solved)} of "
            f"{len(examples)} prompts; {len(self.stored or ())} of its samples of them are "
            f"stored, with log π₀, in {time.perf_counter() - started:.1f} s")
        if not solved:
            run.reporter.log("DPH-RL: the initial policy solved no prompt in every sample, so "
                             "nothing is stored and there is no divergence term: this run is "
                             "GRPO without KL", level="warning")
        elif len(solved) == len(examples):
            run.reporter.log("DPH-RL: the initial policy solved every prompt in every sample; "
                             "the policy-gradient steps draw from all of them, as there are no "
                             "others", level="warning")
        if solved and self.stored is None:
            run.reporter.log("DPH-RL: none of the initial policy's samples of the solved "
                             "prompts passed, so there is no divergence term", level="warning")

    def _store(self, run: OnlineRun, solved: list[Example]) -> None:
        """π₀'s passing samples of the solved prompts, with their log π₀."""
        m = self.settings.dph_samples_per_solved
        config = dataclasses.replace(self.config, group_size=m)  # scoring repeats by group
        parts = []
        for chunk in _chunks(solved, config.prompts_per_step):
            rollouts = run.backend.generate(chunk, m)
            keep = passes(run.task.reward_functions, chunk, rollouts, config).nonzero().flatten()
            if len(keep):
                parts.append(rollouts.select(keep.to(rollouts.input_ids.device)))
        if not parts:
            return
        stored = concat_rollouts(parts, run.tokenizer.pad_token_id) if len(parts) > 1 \
            else parts[0]
        initial_logp = batch_logprobs(run.model, stored, self.config)  # (S, T)
        self.stored = StoredSamples(
            input_ids=stored.input_ids.cpu(), attention_mask=stored.attention_mask.cpu(),
            completion_mask=stored.completion_mask.cpu(), initial_logp=initial_logp.cpu())
        self.order = RehearsalOrder(len(self.stored), self.config.seed)

    def prompt_pool(self, task: Any) -> Any:
        """D_exp: the task's prompts less the solved ones (all of them if that leaves none)."""
        solved = set(self.solved)
        rest = tuple(e for e in task.examples if e.prompt_id not in solved)
        if not solved or not rest:
            return task
        return PromptDataset(examples=rest, reward_functions=task.reward_functions)

    def estimate(self, rewards: torch.Tensor, prompt_ids: list[str]) -> torch.Tensor:
        return grpo.compute_advantages(rewards, self.config.group_size)

    def advantages(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        """GRPO's advantages, and this step's stored samples (the same in every pass)."""
        metrics = super().advantages(scored, run)
        if self.order is not None:
            self.step_rows = self.order.take(self.settings.dph_samples_per_step)
        unsolved = self.probed - len(self.solved)
        return {**metrics, "dph/solved_prompts": float(len(self.solved)),
                "dph/stored_samples": float(len(self.stored or ())),
                # all prompts when every one is solved (prompt_pool)
                "dph/rl_prompt_fraction": unsolved / self.probed if unsolved else 1.0}

    def auxiliary_backward(self, model: torch.nn.Module) -> dict[str, float]:
        """η·D_f on this step's stored samples, backpropagated micro-batch by micro-batch; the
        divergence under every generator on the same tokens, for comparison."""
        if self.stored is None or not self.step_rows:
            return {}
        config, settings = self.config, self.settings
        device = next(model.parameters()).device
        rollouts, initial_logp = self.stored.select(self.step_rows, device)
        total_tokens = int(rollouts.completion_mask.sum().item())
        sums = {"dph/loss": 0.0, "dph/ratio_mean": 0.0,
                **{f"dph/divergence_{name}": 0.0 for name in GENERATORS}}
        order = micro_batch_order(rollouts)
        for start in range(0, len(order), config.micro_batch_size):
            rows = order[start:start + config.micro_batch_size].to(device)  # (n,)
            input_ids, attention_mask, mask = micro_batch(rollouts, rows)  # mask (n, T')
            width = mask.shape[1]
            with autocast(config, device):
                logp = completion_forward(model, input_ids, attention_mask, width,
                                          config.temperature).logp  # (n, T')
            loss, log_u = divergence_loss(logp, initial_logp[rows, :width], mask,
                                          settings.dph_generator, settings.dph_alpha,
                                          settings.dph_eta, total_tokens)
            loss.backward()
            sums["dph/loss"] += loss.item()
            log_u, tokens = log_u.detach(), mask.bool()
            sums["dph/ratio_mean"] += _token_sum(log_u.exp(), tokens) / total_tokens
            for name, f in GENERATORS.items():
                sums[f"dph/divergence_{name}"] += _token_sum(
                    f(log_u, settings.dph_alpha), tokens) / total_tokens
        sums["dph/divergence"] = sums[f"dph/divergence_{settings.dph_generator}"]
        return sums

    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        state = {"solved": list(self.solved), "probed": self.probed,
                 "order": self.order.state_dict() if self.order is not None else None}
        tensors = {"dph_stored": self.stored.state_dict()} if self.stored is not None else {}
        return {"dph": state}, tensors

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, Any]) -> None:
        saved = state["dph"]
        self.solved, self.probed = list(saved["solved"]), int(saved["probed"])
        if tensors.get("dph_stored") is not None:
            self.stored = StoredSamples.from_state_dict(tensors["dph_stored"])
            self.order = RehearsalOrder(len(self.stored), self.config.seed)
            self.order.load_state_dict(saved["order"])


def _token_sum(values: torch.Tensor, tokens: torch.Tensor) -> float:
    return torch.where(tokens, values, 0.0).sum().item()


def _chunks(items: list[Example], size: int) -> list[list[Example]]:
    return [items[start:start + size] for start in range(0, len(items), size)]
