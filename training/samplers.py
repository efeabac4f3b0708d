"""Prompt samplers: which prompts each step trains on (the run's `prompt_sampler`).

    uniform            the task's own `sample`: uniformly at random, distinct within a step
    difficulty_filter  uniform; the online loop keeps the prompts whose group pass rate is strictly
                       between the bounds (`in_bounds`) and refills the batch with new prompts
                       (DAPO's dynamic sampling)
    spo_priority       ∝ sqrt(v̂ (1 − v̂)) + ε from SPO's value tracker (training.algorithms.spo)
    curriculum         easiest first by the dataset's difficulty column, widening to all prompts
                       by the last step
    dump               DUMP's distribution-level curriculum: distributions (named by a dataset
                       column) by a softmax of UCB scores on their recent mean |advantage|, then
                       prompts uniformly within each

A sampler owns its random generator, seeded with the run's seed, and its `state_dict` (JSON) holds
all it needs to go on exactly as an uninterrupted run would. The SPO sampler reads the run's
ValueTracker (the algorithm's `prompt_values`), which SPO updates and checkpoints itself. After
every step the online loop hands the sampler the step's rewards and advantages (`observe`) and
adds its `metrics` to the step's.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from training.algorithms.spo import ValueTracker
from training.spec.config import RunConfig
from training.spec.tasks import Example

# Curriculum pacing: the easiest quarter of the prompts at the first step, all at the last.
CURRICULUM_START = 0.25
# DUMP reports the metrics of this many distributions at most (the first by name), so that a
# dataset of many sources does not flood the charts; and names cut to this many characters.
DUMP_MAX_REPORTED = 16
DUMP_MAX_NAME = 40


class SamplerError(ValueError):
    """The run's prompts cannot be sampled as asked; the message says what to do."""


class PromptSource(Protocol):
    """A built-in task or a prompt dataset."""

    @property
    def examples(self) -> Sequence[Example]: ...

    def sample(self, rng: random.Random, n: int) -> list[Example]: ...


class PromptSampler(Protocol):
    def sample(self, n: int) -> list[Example]:
        """The next n prompts, distinct while there are that many."""

    def observe(self, examples: list[Example], rewards: torch.Tensor, advantages: torch.Tensor,
                group_size: int) -> None:
        """What the step's prompts scored, group by group: rewards (B*G,) and the advantages the
        algorithm gave them, (B*G,) one per completion (the loop reduces per-token advantages
        to their completion's masked mean); called once per step, after the update."""

    def metrics(self) -> dict[str, float]:
        """The sampler's own metrics for the step just observed ({} for none)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class UniformSampler:
    """The task's own uniform sampling, so a run draws the same prompts as with `task.sample`."""

    def __init__(self, task: PromptSource, seed: int):
        self.task = task
        self.rng = random.Random(seed)

    def sample(self, n: int) -> list[Example]:
        return self.task.sample(self.rng, n)

    def observe(self, examples: list[Example], rewards: torch.Tensor, advantages: torch.Tensor,
                group_size: int) -> None:
        pass  # uniform sampling learns nothing from outcomes

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])


class SPOPrioritySampler:
    """Prompts drawn without replacement with probability ∝ the tracker's sqrt(v̂ (1 − v̂)) + ε.

    The reference draws from a large shuffled candidate batch (14,000 of the DAPO set); here from
    the whole pool. A weighted draw without replacement (numpy's `choice(replace=False, p=…)` in
    the reference) is taken as the n largest keys log(u)/w, u ~ U(0, 1] (Efraimidis & Spirakis,
    2006), in one pass over the pool.
    """

    def __init__(self, examples: Sequence[Example], tracker: ValueTracker, seed: int):
        self.examples = list(examples)
        self.tracker = tracker
        self.rng = random.Random(seed)

    def sample(self, n: int) -> list[Example]:
        weights = self.tracker.priority([e.prompt_id for e in self.examples]).tolist()  # (M,)
        if n > len(self.examples):
            return self.rng.choices(self.examples, weights=weights, k=n)
        keys = [math.log(1.0 - self.rng.random()) / w for w in weights]
        chosen = sorted(range(len(keys)), key=keys.__getitem__, reverse=True)[:n]
        return [self.examples[i] for i in chosen]

    def observe(self, examples: list[Example], rewards: torch.Tensor, advantages: torch.Tensor,
                group_size: int) -> None:
        pass  # SPO updates the tracker: the update needs the policy's log-prob change

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])


class CurriculumSampler:
    """Easiest first, by the `difficulty` column (lower = easier).

    Pacing: at step s of S the pool is the easiest fraction
        f(s) = f₀ + (1 − f₀)·(s − 1)/(S − 1),   f₀ = CURRICULUM_START (f = 1 when S = 1)
    of the prompts, ⌈f·M⌉ of M but never fewer than the n asked for; n are drawn uniformly from it,
    distinct while there are enough. Prompts of equal difficulty are in a seeded random order, so
    the file's order does not decide which of them come first. The step advances in `observe`.
    """

    def __init__(self, examples: Sequence[Example], max_steps: int, seed: int):
        missing = [e.prompt_id for e in examples if not _is_number(e.columns.get("difficulty"))]
        if missing:
            which = _which_lack(missing, len(examples))
            raise SamplerError(
                f"The curriculum orders prompts by the dataset's difficulty column, and "
                f"{which}. Upload the dataset with a difficulty column (a number per row, lower "
                f"= easier) mapped, or choose another prompt sampler.")
        self.rng = random.Random(seed)
        shuffled = list(examples)
        self.rng.shuffle(shuffled)
        self.ordered = sorted(shuffled, key=lambda e: float(e.columns["difficulty"]))
        self.max_steps = max_steps
        self.step = 1

    def allowed_fraction(self, step: int) -> float:
        """f(step): the share of the prompts, easiest first, that step draws from."""
        if self.max_steps <= 1:
            return 1.0
        progress = min(max(step - 1, 0) / (self.max_steps - 1), 1.0)
        return CURRICULUM_START + (1.0 - CURRICULUM_START) * progress

    def sample(self, n: int) -> list[Example]:
        total = len(self.ordered)
        if n > total:
            return self.rng.choices(self.ordered, k=n)
        allowed = max(n, math.ceil(self.allowed_fraction(self.step) * total))
        return self.rng.sample(self.ordered[:allowed], n)

    def observe(self, examples: list[Example], rewards: torch.Tensor, advantages: torch.Tensor,
                group_size: int) -> None:
        self.step += 1

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])
        self.step = int(state["step"])


class DUMPSampler:
    """DUMP (Wang et al. 2025): a curriculum over the dataset's distributions, by how much the
    policy can still learn from each, read off the size of its advantages.

    Distribution d of a prompt is its value in the dataset's `column`. Its learnability is the
    mean absolute advantage of its last W completions (0 before any):

        L̂_d = mean_{i ∈ window_d} |Â_i|

    and each of a step's n prompts comes from distribution d with probability

        p_d = softmax_d(UCB_d / τ),   UCB_d = L̂_d + c·√(2 ln(max(Σ_j n_j, 1) + 1) / (n_d + 1))

    n_d the completions drawn from d so far: the bonus favours distributions seen little, and
    ones never seen most. Within a distribution the prompts are drawn uniformly, distinct while
    it has enough. As the authors' code (the paper writes √(2 ln Σ_j n_j / n_d)): the +1s, n_d
    and the window counted in completions, W = 300, c = 1, τ = 0.1. Departures: the code draws
    every prompt independently, with replacement, and also feeds its validation scores into the
    windows; rows without a distribution are refused here rather than pooled as "default".
    """

    def __init__(self, examples: Sequence[Example], *, column: str, window: int,
                 exploration: float, temperature: float, seed: int):
        names = [_distribution_name(e.columns.get(column)) for e in examples]
        missing = [e.prompt_id for e, name in zip(examples, names, strict=True) if name is None]
        if missing:
            which = _which_lack(missing, len(examples))
            raise SamplerError(
                f"DUMP draws prompts by distribution, named by the dataset's {column!r} column, "
                f"and {which}. Give every row a distribution (text or a number; when uploading, "
                f"map a column as the source), name the column that holds them in 'DUMP "
                f"distribution column', or choose another prompt sampler.")
        pools: dict[str, list[Example]] = {}
        for example, name in zip(examples, names, strict=True):
            pools.setdefault(name, []).append(example)
        self.pools = dict(sorted(pools.items()))  # by name: the file's order decides nothing
        self.column, self.exploration, self.temperature = column, exploration, temperature
        self.recent = {d: deque(maxlen=window) for d in self.pools}  # |Â| of the last W
        self.drawn = dict.fromkeys(self.pools, 0)  # n_d, in completions
        self.shares: dict[str, float] = {}  # of the last observed step's prompts
        self.keys = metric_names(list(self.pools)[:DUMP_MAX_REPORTED])
        self.rng = random.Random(seed)

    def learnability(self, name: str) -> float:
        """L̂_d: the mean |Â| of the distribution's window, 0 while it is empty."""
        window = self.recent[name]
        return sum(window) / len(window) if window else 0.0

    def probabilities(self) -> list[float]:
        """p_d of each distribution, in name order."""
        return softmax(ucb_scores([self.learnability(d) for d in self.pools],
                                  list(self.drawn.values()), self.exploration), self.temperature)

    def sample(self, n: int) -> list[Example]:
        chosen = self.rng.choices(list(self.pools), weights=self.probabilities(), k=n)
        counts = Counter(chosen)
        drawn = {d: iter(_draw(self.rng, pool, counts[d]))
                 for d, pool in self.pools.items() if d in counts}
        return [next(drawn[d]) for d in chosen]

    def observe(self, examples: list[Example], rewards: torch.Tensor, advantages: torch.Tensor,
                group_size: int) -> None:
        names = [_distribution_name(e.columns.get(self.column)) for e in examples]
        magnitudes = advantages.abs().view(-1, group_size).tolist()  # (B, G)
        for name, group in zip(names, magnitudes, strict=True):
            self.recent[name].extend(group)
            self.drawn[name] += len(group)
        counts = Counter(names)
        self.shares = {d: counts[d] / len(names) for d in self.pools}

    def metrics(self) -> dict[str, float]:
        """dump/share/<d> (of the step's prompts), dump/learnability/<d> (L̂_d after the step)
        and dump/probability/<d> (p_d for the next step), for the first DUMP_MAX_REPORTED
        distributions by name."""
        metrics = {}
        for d, p in zip(self.pools, self.probabilities()):
            if d in self.keys:
                key = self.keys[d]
                metrics[f"dump/share/{key}"] = self.shares.get(d, 0.0)
                metrics[f"dump/learnability/{key}"] = self.learnability(d)
                metrics[f"dump/probability/{key}"] = p
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng), "drawn": dict(self.drawn),
                "recent": {d: list(window) for d, window in self.recent.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])
        # A distribution the checkpoint does not know (the dataset changed) starts unseen.
        for d in self.pools:
            self.recent[d].clear()
            self.recent[d].extend(state["recent"].get(d, []))
            self.drawn[d] = int(state["drawn"].get(d, 0))


def ucb_scores(learnability: Sequence[float], drawn: Sequence[int], c: float) -> list[float]:
    """DUMP's UCB_d = L̂_d + c·√(2 ln(max(Σn, 1) + 1) / (n_d + 1)), the authors' code's form.

    >>> [round(u, 4) for u in ucb_scores([0.75, 0.0], [2, 0], c=1.0)]  # √(2 ln 3 / 3), √(2 ln 3)
    [1.6058, 1.4823]
    """
    total = max(sum(drawn), 1)
    return [mean + c * math.sqrt(2 * math.log(total + 1) / (n + 1))
            for mean, n in zip(learnability, drawn, strict=True)]


def softmax(scores: Sequence[float], temperature: float) -> list[float]:
    """exp(s_d/τ) / Σ_j exp(s_j/τ), computed from s − max s so that no term overflows.

    >>> [round(p, 4) for p in softmax([1.6058, 1.4823], 0.1)]  # e^1.235 / (e^1.235 + 1)
    [0.7747, 0.2253]
    """
    top = max(scores)
    weights = [math.exp((s - top) / temperature) for s in scores]
    total = sum(weights)
    return [w / total for w in weights]


def metric_names(names: Sequence[str]) -> dict[str, str]:
    """A metric-key segment per name: letters, digits, '_', '-' and '.' kept, every other run
    of characters (a '/' too, which would nest the charts) as one '_', cut to DUMP_MAX_NAME
    characters; a segment already taken gets '-2', '-3', … appended.

    >>> metric_names(["gsm8k", "K&K/3 people", "K&K 3 people"])
    {'gsm8k': 'gsm8k', 'K&K/3 people': 'K_K_3_people', 'K&K 3 people': 'K_K_3_people-2'}
    """
    keys: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:DUMP_MAX_NAME]
        key, suffix = base, 1
        while key in taken:
            suffix += 1
            key = f"{base}-{suffix}"
        keys[name] = key
        taken.add(key)
    return keys


def _distribution_name(value: Any) -> str | None:
    """A row's distribution from its column's value: text (trimmed) or a number; None if none.

    >>> [_distribution_name(v) for v in (" gsm8k ", 3, 2.5, 3.0, " ", None, True, ["a"])]
    ['gsm8k', '3', '2.5', '3', None, None, None, None]
    """
    if isinstance(value, str):
        return value.strip() or None
    if not _is_number(value):
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _draw(rng: random.Random, pool: list[Example], k: int) -> list[Example]:
    """k of the pool uniformly, distinct while it has that many."""
    return rng.sample(pool, k) if k <= len(pool) else rng.choices(pool, k=k)


def in_bounds(rewards: torch.Tensor, group_size: int, low: float, high: float) -> torch.Tensor:
    """Which groups the difficulty filter keeps: low < pass rate < high. rewards (B*G,) group by
    group -> mask (B,) bool.

    Pass `rewards` = the task's own correctness reward (not the weighted total, whose extra terms
    say nothing about difficulty). A completion passes when its reward is above 0, as SPO's
    reference counts offline successes; for 0/1 correctness the pass rate is the group's mean.
    With the bounds 0 and 1 this keeps exactly the groups whose completions disagree (DAPO).
    """
    pass_rate = (rewards.view(-1, group_size) > 0).float().mean(dim=1)  # (B,)
    return (pass_rate > low) & (pass_rate < high)


_SAMPLERS: dict[str, Callable[[RunConfig, PromptSource, ValueTracker | None], PromptSampler]] = {
    "uniform": lambda config, task, tracker: UniformSampler(task, config.seed),
    # The filter itself runs in the online loop, around generation: it draws prompts uniformly.
    "difficulty_filter": lambda config, task, tracker: UniformSampler(task, config.seed),
    "spo_priority": lambda config, task, tracker: SPOPrioritySampler(
        task.examples, _required(tracker), config.seed),
    "curriculum": lambda config, task, tracker: CurriculumSampler(
        task.examples, config.max_steps, config.seed),
    "dump": lambda config, task, tracker: DUMPSampler(
        task.examples, column=config.dump_column, window=config.dump_window,
        exploration=config.dump_exploration, temperature=config.dump_temperature,
        seed=config.seed),
}


def make_sampler(config: RunConfig, task: PromptSource,
                 tracker: ValueTracker | None = None) -> PromptSampler:
    """The run's prompt sampler over `task`'s prompts; SamplerError if they do not allow it
    (a curriculum over prompts without a difficulty, DUMP over prompts without a distribution).
    spo_priority needs the run's tracker."""
    return _SAMPLERS[config.prompt_sampler](config, task, tracker)


def dataset_columns(config: RunConfig) -> tuple[str, ...]:
    """The dataset columns the run's sampler reads besides those every prompt dataset keeps
    (training.spec.prompt_dataset): DUMP's distribution column."""
    return (config.dump_column,) if config.prompt_sampler == "dump" else ()


def _required(tracker: ValueTracker | None) -> ValueTracker:
    if tracker is None:
        raise TypeError("spo_priority sampling reads the run's ValueTracker: pass it")
    return tracker


def _which_lack(missing: list[str], total: int) -> str:
    """Which of a dataset's `total` prompts lack a column a sampler needs, for its error: all,
    or how many and the first ten prompt ids of `missing`."""
    if len(missing) == total:
        return "none of its prompts has one"
    more = ", …" if len(missing) > 10 else ""
    return f"{len(missing)} of its {total} prompts have none ({', '.join(missing[:10])}{more})"


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def _set_rng_state(rng: random.Random, state: list[Any]) -> None:
    version, internal, gauss_next = state
    rng.setstate((version, tuple(internal), gauss_next))
