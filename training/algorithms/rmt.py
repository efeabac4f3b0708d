"""RMT (Tian et al., 2025, "Reinforcement Mid-Training", arXiv 2509.24375): reinforcement
learning on unlabelled text, with next-token prediction as the verifiable task.

The authors' code is not public (the paper's pages say "code: TBD"), so rlab follows the paper
as far as its published text goes; what the text leaves open is marked "rlab's reading" below.

Questions. The run's corpus (training.spec.text_corpus) is tokenised, passage by passage, and cut
into windows of at most C tokens (rmt_context_tokens). Every position k of a window with at least
rmt_min_context tokens before it is a candidate target when its token, decoded alone and
stripped of white space, is not blank: the question is the window's first k tokens, decoded, in
NEXT_TOKEN_PROMPT, and the answer is that token. A completion is a short reasoning, then the
prediction in <answer>…</answer>; r_match = 1 when the prediction equals the answer.

(1) Dynamic token budget. At step t of the run's T steps (the paper's schedule):

    B_t = max(B_min, B_0 · γ^((t/T)^k))

and a completion of ℓ tokens (ℓ counts its end-of-sequence token) is rewarded

    r = r_match + r_match · r_len(ℓ; B_t),    r_len(ℓ; B) = max(0, 1 − |ℓ − B| / B)

The paper gives r_len a triangular shape relative to B_t; the peak at B_t, the zero at 0 and 2B_t,
and paying it for correct predictions only are rlab's reading (training.spec.text_corpus's
`length_reward`, `budget_length`). Generation is capped by max_new_tokens, not by B_t: the budget
acts through the reward.

(2) Easy-to-hard curriculum. Before the first step the proxy model, the initial policy, reads each
window once, and its entropy at every candidate target j (the token at position k) is kept:

    H_j = −Σ_v π₀(v | x_<k) log π₀(v | x_<k)

Candidates are ranked by H_j, u_j = rank_j / (M − 1) ∈ [0, 1] (0: the lowest of the corpus), and
step t draws its targets without replacement with probability ∝

    w_j = exp(−(u_j − p_t)² / (2σ²)),    p_t = (t − 1) / (T − 1)

so low-entropy tokens come first and high-entropy ones last. The paper samples from easy to hard
tokens by entropy; this moving window over the ranks is rlab's reading. The entropies are kept
in the checkpoint, so a resumed run draws from the same ones.

(3) Dual training. The G completions of each question get GRPO's group-normalised advantages
and GRPO's clipped surrogate (the run's loss settings): RL on the selected tokens. Every
optimisation pass adds λ times the next-token cross-entropy on all tokens of the step's windows:

    L = L_GRPO + λ · (1/N) Σ_windows Σ_k −log π_θ(x_k | x_<k)

N the number of tokens predicted (every token of a window but its first).

Metrics: rmt/next_token_accuracy (the share of completions whose prediction is right),
rmt/budget (B_t), rmt/reasoning_length (mean ℓ), rmt/curriculum_entropy (the mean proxy entropy
of the step's targets, in nats), rmt/ntp_loss (the mean cross-entropy above, before λ).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from training.algorithms import grpo
from training.algorithms.base import Algorithm, OnlineRun, ScoredBatch
from training.checkpoints import CheckpointError
from training.ops import token_logprobs_and_entropy
from training.rollouts.logprobs import autocast
from training.spec.config import RunConfig
from training.spec.tasks import Example
from training.spec.text_corpus import (
    CorpusFileError,
    Passage,
    next_token_match,
    next_token_prompt,
)


def token_budget(step: int, max_steps: int, *, start: float, floor: float, decay: float,
                 power: float) -> float:
    """B_t = max(B_min, B_0 · γ^((t/T)^k)).

    >>> [round(token_budget(t, 4, start=64, floor=10, decay=0.25, power=1.0), 3)
    ...  for t in (1, 2, 4)]
    [45.255, 32.0, 16.0]
    """
    return max(floor, start * decay ** ((step / max_steps) ** power))


def curriculum_progress(step: int, max_steps: int) -> float:
    """p_t = (t − 1)/(T − 1), in [0, 1]; 1 for a run of one step.

    >>> [curriculum_progress(t, 5) for t in (1, 3, 5, 9)], curriculum_progress(1, 1)
    ([0.0, 0.5, 1.0, 1.0], 1.0)
    """
    if max_steps <= 1:
        return 1.0
    return min(max(step - 1, 0) / (max_steps - 1), 1.0)


def entropy_ranks(entropy: torch.Tensor) -> torch.Tensor:
    """u_j = rank of H_j / (M − 1): 0 for the lowest entropy, 1 for the highest; equal
    entropies ranked in their order. (M,) -> (M,).

    >>> (entropy_ranks(torch.tensor([2.0, 0.5, 1.0, 3.0])) * 3).tolist()
    [2.0, 0.0, 1.0, 3.0]
    """
    count = entropy.numel()
    ranks = torch.empty(count)
    ranks[torch.argsort(entropy, stable=True)] = torch.arange(count, dtype=torch.float32)
    return ranks / max(count - 1, 1)


def curriculum_log_weights(ranks: torch.Tensor, progress: float, width: float) -> torch.Tensor:
    """log w_j = −(u_j − p)² / (2σ²), the curriculum's sampling weights in log space (they
    underflow as weights when σ is small). (M,) -> (M,)."""
    return -(ranks - progress) ** 2 / (2 * width ** 2)


def weighted_draw(log_weights: list[float], n: int, rng: random.Random) -> list[int]:
    """n indices drawn without replacement with probability ∝ exp(log_weights): the n largest
    log w_j + g_j, g_j standard Gumbel noise (the Gumbel-top-k trick), or with replacement when
    there are fewer than n."""
    if n > len(log_weights):
        weights = [math.exp(w - max(log_weights)) for w in log_weights]
        return rng.choices(range(len(log_weights)), weights=weights, k=n)
    keys = [w - math.log(max(-math.log(1.0 - rng.random()), 1e-300)) for w in log_weights]
    return sorted(range(len(keys)), key=keys.__getitem__, reverse=True)[:n]


def next_token_cross_entropy(logits: torch.Tensor, input_ids: torch.Tensor,
                             attention_mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Σ_k −log π(x_k | x_<k) over every token but the first of each right-padded row, and how
    many tokens that is. logits (n, L, V), input_ids, attention_mask (n, L)."""
    targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)  # (n, L − 1)
    total = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                            ignore_index=-100, reduction="sum")
    return total, int((targets != -100).sum().item())


@dataclass(frozen=True)
class Window:
    """At most C consecutive tokens of one passage."""

    passage_id: str
    start: int  # the index of its first token in the passage
    ids: tuple[int, ...]


@dataclass(frozen=True)
class Target:
    """A candidate target: the token at `position` of window `window`."""

    window: int
    position: int
    token: str  # decoded alone, stripped


class TokenTable:
    """The corpus as the tokenizer cuts it: windows, candidate targets, and the proxy's entropy
    at each target (None until computed or restored)."""

    def __init__(self, passages: tuple[Passage, ...], tokenizer: Any, *, context: int,
                 min_context: int):
        self.tokenizer = tokenizer
        self.windows: list[Window] = []
        self.targets: list[Target] = []
        for passage in passages:
            ids = tokenizer(passage.text, add_special_tokens=False)["input_ids"]
            for start in range(0, len(ids), context):
                window = Window(passage.passage_id, start, tuple(ids[start:start + context]))
                candidates = [Target(len(self.windows), k, tokenizer.decode([window.ids[k]]))
                              for k in range(min_context, len(window.ids))]
                candidates = [Target(t.window, t.position, t.token.strip()) for t in candidates
                              if t.token.strip() and "\ufffd" not in t.token]
                if candidates:
                    self.windows.append(window)
                    self.targets.extend(candidates)
        if not self.targets:
            raise CorpusFileError(
                f"The corpus has no token with {min_context} tokens of its passage before it: "
                f"use longer passages, or lower the RMT minimum context.")
        self.entropy: torch.Tensor | None = None  # (M,)

    def example(self, index: int, budget: float) -> Example:
        """The question of target `index`, asked at a step whose budget is `budget`."""
        target = self.targets[index]
        window = self.windows[target.window]
        context = self.tokenizer.decode(list(window.ids[:target.position]))
        return Example(
            prompt_id=f"{window.passage_id}:{window.start + target.position}",
            prompt=next_token_prompt(context),
            columns={"next_token": target.token, "budget": budget,
                     "entropy": round(float(self.entropy[index]), 4)})


def proxy_entropies(model: torch.nn.Module, table: TokenTable, config: RunConfig,
                    device: torch.device) -> torch.Tensor:
    """H_j (M,) of the module docstring: the model's next-token entropy at every target, one
    forward pass per window, without gradient."""
    by_window: dict[int, torch.Tensor] = {}
    pad = table.tokenizer.pad_token_id or 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(table.windows), config.micro_batch_size):
            chunk = range(start, min(start + config.micro_batch_size, len(table.windows)))
            input_ids, attention_mask = _padded([table.windows[i].ids for i in chunk], pad,
                                                device)
            with autocast(config, device):
                logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            # entropy[:, k − 1] is that of the distribution that predicts token k
            _, entropy = token_logprobs_and_entropy(logits[:, :-1], input_ids[:, 1:])
            for row, i in enumerate(chunk):
                by_window[i] = entropy[row].float().cpu()
    model.train(was_training)
    return torch.stack([by_window[t.window][t.position - 1] for t in table.targets])


def _padded(rows: list[tuple[int, ...]], pad: int,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input_ids and attention_mask (n, L) of token rows."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return ids.to(device), mask.to(device)


@dataclass
class Draw:
    """One step's questions: at which step, under which budget, of which targets."""

    step: int
    budget: float
    targets: list[int]
    examples: list[Example]


class EntropyCurriculum:
    """RMT's prompt sampler (training.samplers' PromptSampler): each step's targets by the
    curriculum of the module docstring, asked under that step's budget B_t. It owns its random
    generator, seeded with the run's seed; the step advances in `observe`."""

    def __init__(self, table: TokenTable, config: RunConfig):
        self.table = table
        self.config = config
        self.settings = config.algorithm_settings
        self.rng = random.Random(config.seed)
        self.step = 1
        self.last: Draw | None = None
        self._ranks: torch.Tensor | None = None

    def budget(self, step: int) -> float:
        settings = self.settings
        return token_budget(step, self.config.max_steps, start=settings.rmt_budget_start,
                            floor=settings.rmt_budget_floor, decay=settings.rmt_budget_decay,
                            power=settings.rmt_budget_power)

    def sample(self, n: int) -> list[Example]:
        if self.table.entropy is None:
            raise RuntimeError("RMT's proxy entropies are neither computed nor restored")
        if self._ranks is None:
            self._ranks = entropy_ranks(self.table.entropy)
        progress = curriculum_progress(self.step, self.config.max_steps)
        log_weights = curriculum_log_weights(self._ranks, progress,
                                             self.settings.rmt_curriculum_width)
        chosen = weighted_draw(log_weights.tolist(), n, self.rng)
        budget = self.budget(self.step)
        examples = [self.table.example(j, budget) for j in chosen]
        self.last = Draw(self.step, budget, chosen, examples)
        return examples

    def observe(self, examples: list[Example], rewards: torch.Tensor, advantages: torch.Tensor,
                group_size: int) -> None:
        self.step += 1

    def metrics(self) -> dict[str, float]:
        return {}  # the algorithm reports the curriculum's (rmt/curriculum_entropy)

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss_next = self.rng.getstate()
        return {"rng": [version, list(internal), gauss_next], "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, internal, gauss_next = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss_next))
        self.step = int(state["step"])


class RMT(Algorithm):
    """GRPO's advantages on next-token questions drawn by the entropy curriculum, plus the
    next-token loss; its settings are training.spec.algorithms.RMTSettings."""

    def __init__(self, config: RunConfig):
        super().__init__(config)
        self.table: TokenTable | None = None
        self.curriculum: EntropyCurriculum | None = None
        self.step_windows: list[int] = []  # the windows of the step's targets, for the NTP loss

    def prompt_sampler(self, task: Any, tokenizer: Any) -> EntropyCurriculum:
        settings = self.settings
        self.table = TokenTable(task.passages, tokenizer, context=settings.rmt_context_tokens,
                                min_context=settings.rmt_min_context)
        self.curriculum = EntropyCurriculum(self.table, self.config)
        return self.curriculum

    def prepare(self, run: OnlineRun) -> None:
        started = time.perf_counter()
        self.table.entropy = proxy_entropies(run.model, self.table, self.config, run.device)
        run.reporter.log(
            f"RMT: {len(self.table.targets)} target tokens in {len(self.table.windows)} windows "
            f"of the corpus; the initial policy's entropy at them, mean "
            f"{self.table.entropy.mean().item():.2f} nats, took "
            f"{time.perf_counter() - started:.1f} s")

    def estimate(self, rewards: torch.Tensor, prompt_ids: list[str]) -> torch.Tensor:
        return grpo.compute_advantages(rewards, self.config.group_size)

    def advantages(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        metrics = super().advantages(scored, run)
        draw = self.curriculum.last
        rollouts = scored.batch.rollouts
        truth = [e.columns["next_token"] for e in draw.examples
                 for _ in range(self.config.group_size)]  # (N,)
        correct = next_token_match([], rollouts.texts, next_token=truth)
        self.step_windows = sorted({self.table.targets[j].window for j in draw.targets})
        return {**metrics,
                "rmt/next_token_accuracy": sum(correct) / len(correct),
                "rmt/budget": draw.budget,
                "rmt/reasoning_length": rollouts.lengths.float().mean().item(),
                "rmt/curriculum_entropy": self.table.entropy[draw.targets].mean().item()}

    def auxiliary_backward(self, model: torch.nn.Module) -> dict[str, float]:
        """λ · the next-token cross-entropy of the step's windows, backpropagated micro-batch by
        micro-batch as its share of the token mean."""
        windows = [self.table.windows[i].ids for i in self.step_windows]
        tokens = sum(len(ids) - 1 for ids in windows)
        if not tokens:
            return {}
        device = next(model.parameters()).device
        pad = self.table.tokenizer.pad_token_id or 0
        coef = self.settings.rmt_ntp_coef
        total = 0.0
        for start in range(0, len(windows), self.config.micro_batch_size):
            input_ids, attention_mask = _padded(
                windows[start:start + self.config.micro_batch_size], pad, device)
            # with λ = 0 the loss is still measured, without a gradient
            with torch.set_grad_enabled(coef > 0), autocast(self.config, device):
                logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            summed, _ = next_token_cross_entropy(logits, input_ids, attention_mask)
            if coef > 0:
                (coef * summed / tokens).backward()
            total += summed.item()
        return {"rmt/ntp_loss": total / tokens}

    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {"rmt_entropy": self.table.entropy}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, Any]) -> None:
        entropy = tensors.get("rmt_entropy")
        if entropy is None or entropy.numel() != len(self.table.targets):
            saved = "none" if entropy is None else entropy.numel()
            raise CheckpointError(
                f"The checkpoint holds the proxy's entropy at {saved} target tokens, and the "
                f"corpus gives {len(self.table.targets)} now: resume with the corpus, model and "
                f"RMT context settings the run started with.")
        self.table.entropy = entropy.float().cpu()
