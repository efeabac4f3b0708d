"""Evaluating a model on prompts: n samples of each from a rollout backend, scored by the task's
reward functions, summarized as pass@k, maj@k and avg@n (training.eval_metrics).

A sample counts as correct when its reward reaches `success_reward` (1 for the built-in 0/1
verifiers). Majority voting needs each sample's answer: the verifier's own reading of the
completion (the last number, for `correct`), so that "7" and "7.0" vote together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence

from training import rewards
from training.config import RunConfig
from training.eval_metrics import PromptSamples
from training.generation import RolloutBackend
from training.tasks import Example
from training.trainer import score_rollouts

# Reward function name -> how it reads a completion's answer, for majority voting.
ANSWER_READERS: dict[str, Callable[[str], Hashable | None]] = {
    "correct": rewards.last_number,
}


def sample_and_score(backend: RolloutBackend, examples: Sequence[Example],
                     reward_functions: dict[str, Callable[..., list[float]]], config: RunConfig,
                     *, samples: int, batch_prompts: int = 16, success_reward: float = 1.0,
                     should_stop: Callable[[], bool] = lambda: False,
                     ) -> list[PromptSamples] | None:
    """`samples` completions of every example, `batch_prompts` prompts a generation call; each
    prompt's answers, correctness, total reward and lengths. None if stopped part-way. The
    reward is the sum of the functions' scores; answers come from the first function that has
    an answer reader (none: every sample's answer is unknown, so maj@k is 0)."""
    reader = next((ANSWER_READERS[name] for name in reward_functions if name in ANSWER_READERS),
                  None)
    scoring = dataclasses.replace(config, group_size=samples)  # score_rollouts repeats by group
    results: list[PromptSamples] = []
    for start in range(0, len(examples), batch_prompts):
        if should_stop():
            return None
        chunk = list(examples[start:start + batch_prompts])
        rollouts = backend.generate(chunk, samples)
        per_function = score_rollouts(reward_functions, chunk, rollouts, scoring)
        total = sum(per_function.values()).tolist()  # (b·n,)
        lengths = rollouts.lengths.tolist()
        for i, example in enumerate(chunk):
            rows = range(i * samples, (i + 1) * samples)
            results.append(PromptSamples(
                prompt_id=example.prompt_id,
                answers=tuple(reader(rollouts.texts[r]) if reader else None for r in rows),
                correct=tuple(total[r] >= success_reward for r in rows),
                rewards=tuple(total[r] for r in rows),
                lengths=tuple(int(lengths[r]) for r in rows)))
    return results

