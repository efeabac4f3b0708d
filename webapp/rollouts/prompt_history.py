"""Reads for a prompt's history: the steps at which a run sampled one prompt, with their
completions, and its mean reward at every step, drawn as a sparkline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Avg, Count, F, Q

from webapp.rollouts.importers import PROMPT_MESSAGES, UNSCORED
from webapp.rollouts.rollout_browser import for_display, mean_reward, reward_names
from webapp.runs.models import Rollout, Run

PROMPT_HISTORY_STEPS = 20
PROMPT_HISTORY_COMPLETIONS = 160


@dataclass
class PromptStep:
    step: int
    completions: list[Rollout]

    @property
    def mean_reward(self) -> float | None:
        return mean_reward(self.completions)

    @property
    def reward_names(self) -> list[str]:
        return reward_names(self.completions)


@dataclass
class PromptHistory:
    prompt_id: str
    prompt: str
    prompt_messages: list[dict[str, str]] | None
    steps: list[PromptStep]
    mean_rewards: list[tuple[int, float, int]] = field(default_factory=list)
    next_step: int | None = None
    prev_step: int | None = None


def prompt_history(run: Run, prompt_id: str, *, after: int | None = None,
                   before: int | None = None, with_means: bool = True) -> PromptHistory | None:
    """The steps at which a prompt was sampled, oldest first, a page of them after step `after`
    (or before `before`) with their completions, and (`with_means`) its mean reward at every
    step, for the whole run. None when the run never sampled it.

    A page holds up to PROMPT_HISTORY_STEPS steps, fewer when they would pass
    PROMPT_HISTORY_COMPLETIONS completions (a small dataset puts a prompt in many groups of a
    step), and always at least one step."""
    rows = Rollout.objects.filter(run=run, prompt_id=prompt_id)
    first = (rows.order_by("step", "group", "sample_index").only("prompt")
             .annotate(prompt_messages=F(f"extra__{PROMPT_MESSAGES}")).first())
    if first is None:
        return None
    counts = rows.values("step").annotate(n=Count("id"))
    backwards = before is not None and after is None
    if after is not None:
        counts = counts.filter(step__gt=after)
    elif before is not None:
        counts = counts.filter(step__lt=before)
    found = list(counts.order_by("-step" if backwards else "step")
                 .values_list("step", "n")[:PROMPT_HISTORY_STEPS + 1])
    taken, total = [], 0
    for step, n in found[:PROMPT_HISTORY_STEPS]:
        if taken and total + n > PROMPT_HISTORY_COMPLETIONS:
            break
        taken.append(step)
        total += n
    more = len(taken) < len(found)
    taken.sort()
    completions: dict[int, list[Rollout]] = {step: [] for step in taken}
    for rollout in for_display(rows.filter(step__in=taken)).order_by("step", "group",
                                                                      "sample_index"):
        completions[rollout.step].append(rollout)
    history = PromptHistory(prompt_id=prompt_id, prompt=first.prompt,
                            prompt_messages=first.prompt_messages,
                            steps=[PromptStep(step, completions[step]) for step in taken],
                            mean_rewards=mean_reward_by_step(run, prompt_id) if with_means
                            else [])
    if taken:
        history.next_step = taken[-1] if (more or backwards) else None
        history.prev_step = taken[0] if (more if backwards else after is not None) else None
    return history


def mean_reward_by_step(run: Run, prompt_id: str) -> list[tuple[int, float, int]]:
    """(step, mean reward, completions) for every step at which the prompt was sampled and some
    completion was scored."""
    return list(Rollout.objects.filter(run=run, prompt_id=prompt_id)
                .exclude(Q(extra__has_key=UNSCORED)).values("step")
                .annotate(mean=Avg("reward"), n=Count("id")).order_by("step")
                .values_list("step", "mean", "n"))


def sparkline(points: list[tuple[int, float, int]], *, width: int = 1200, height: int = 120,
              pad: int = 6, max_points: int = 300) -> dict[str, Any]:
    """SVG coordinates for (step, mean reward, completions) points: a polyline's `points` and a
    dot per point, x by step, y by value (higher is up). Past max_points, neighbouring points are
    merged into their completion-weighted mean, so the page stays small for a long run.

    >>> sparkline([(1, 0.0, 8), (3, 1.0, 8)], width=20, height=10, pad=0)["polyline"]
    '0.0,10.0 20.0,0.0'
    >>> merged = sparkline([(1, 0.0, 2), (2, 1.0, 6), (3, 0.5, 8)], max_points=2)
    >>> [d["label"] for d in merged["dots"]]
    ['steps 1–2: 0.750 over 8 completions', 'step 3: 0.500 over 8 completions']
    """
    if not points:
        return {"polyline": "", "dots": [], "width": width, "height": height}
    size = math.ceil(len(points) / max_points)
    merged = []
    for i in range(0, len(points), size):
        chunk = points[i:i + size]
        n = sum(p[2] for p in chunk)
        mean = sum(p[1] * p[2] for p in chunk) / n if n else chunk[0][1]
        merged.append((chunk[0][0], chunk[-1][0], mean, n))
    x0, x1 = merged[0][0], merged[-1][1]
    values = [m[2] for m in merged]
    y0, y1 = min(values), max(values)
    if y0 == y1:
        y0, y1 = y0 - 1, y1 + 1

    def x(step: float) -> float:
        return round(pad + (width - 2 * pad) * ((step - x0) / (x1 - x0) if x1 > x0 else 0.5), 1)

    def y(value: float) -> float:
        return round(pad + (height - 2 * pad) * (1 - (value - y0) / (y1 - y0)), 1)

    dots = [{"x": x((first + last) / 2), "y": y(mean),
             "label": f"{'step' if first == last else 'steps'} "
                      f"{first}{'' if first == last else f'–{last}'}: {mean:.3f} over {n} "
                      f"completion{'' if n == 1 else 's'}"}
            for first, last, mean, n in merged]
    return {"polyline": " ".join(f"{d['x']},{d['y']}" for d in dots), "dots": dots,
            "width": width, "height": height, "low": min(values), "high": max(values),
            "first_step": x0, "last_step": x1}
