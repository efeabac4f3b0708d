"""Evaluating a model on prompts: n samples of each from a rollout backend, scored by a verifier,
summarized as pass@k, maj@k and avg@n (training.spec.evaluation_metrics).

Two callers: an evaluation job (`evaluate`, which the worker runs as `python -m training.process`
with job "evaluation") on a base model or a checkpoint, and a training run's periodic evaluation
on its held-out prompts (training.loops.online), through the run's own backend.

A sample counts as correct when its reward reaches `success_reward` (1 for the built-in 0/1
verifiers). Majority voting needs each sample's answer: the verifier's own reading of the
completion (the last number, for `correct`), so that "7" and "7.0" vote together.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training import checkpoints

from training.spec import rewards
from training.spec.config import RunConfig
from training.spec.evaluation_config import EvalConfig, parse_ks
from training.spec.evaluation_metrics import PromptSamples, summarize
from training.spec.events import Reporter, RolloutRecord
from training.rollouts.generation import (
    BackendUnavailable,
    RolloutBackend,
    Rollouts,
    Sampling,
    make_backend,
)
from training.policies.loading import ModelNotFound, load_policy
from training.spec.prompt_dataset import DatasetFileError, load_prompt_dataset
from training.loops.setup import Outcome, peak_memory, prepare_process, resolve_device
from training.rollouts.scoring import score_rollouts
from training.spec.tasks import Example, get_task, split_examples

# Reward function name -> how it reads a completion's answer, for majority voting.
ANSWER_READERS: dict[str, Callable[[str], Hashable | None]] = {
    "correct": rewards.last_number,
    "math_equivalent": rewards.math_answer,
}
VERIFIERS: dict[str, Callable[..., list[float]]] = {
    "correct": rewards.correct_answer,
    "math_equivalent": rewards.math_equivalent,
}
METRIC_PREFIX = "eval/"


@dataclass
class ScoredBatch:
    """One generation call's prompts, their samples and scores."""

    examples: list[Example]
    rollouts: Rollouts
    per_function: dict[str, torch.Tensor]  # (b·n,) each
    prompts: list[PromptSamples]


def scored_batches(backend: RolloutBackend, examples: Sequence[Example],
                   reward_functions: dict[str, Callable[..., list[float]]], config: RunConfig,
                   *, samples: int, batch_prompts: int = 16, success_reward: float = 1.0,
                   sampling: Sampling | None = None,
                   should_stop: Callable[[], bool] = lambda: False,
                   ) -> Iterator[ScoredBatch]:
    """`samples` completions of every example, `batch_prompts` prompts a generation call, each
    batch scored; ends early when should_stop() is true before a batch. The reward is the sum of
    the functions' scores; answers come from the first function that has an answer reader
    (none: every answer is unknown, so maj@k is 0)."""
    reader = next((ANSWER_READERS[name] for name in reward_functions if name in ANSWER_READERS),
                  None)
    scoring = dataclasses.replace(config, group_size=samples)  # score_rollouts repeats by group
    if sampling is not None:
        scoring = dataclasses.replace(scoring, max_new_tokens=sampling.max_new_tokens)
    for start in range(0, len(examples), batch_prompts):
        if should_stop():
            return
        chunk = list(examples[start:start + batch_prompts])
        rollouts = backend.generate(chunk, samples, sampling)
        per_function = score_rollouts(reward_functions, chunk, rollouts, scoring)
        total = sum(per_function.values()).tolist()  # (b·n,)
        lengths = rollouts.lengths.tolist()
        prompts = []
        for i, example in enumerate(chunk):
            rows = range(i * samples, (i + 1) * samples)
            prompts.append(PromptSamples(
                prompt_id=example.prompt_id,
                answers=tuple(reader(rollouts.texts[r]) if reader else None for r in rows),
                correct=tuple(total[r] >= success_reward for r in rows),
                rewards=tuple(total[r] for r in rows),
                lengths=tuple(int(lengths[r]) for r in rows)))
        yield ScoredBatch(chunk, rollouts, per_function, prompts)


def sample_and_score(backend: RolloutBackend, examples: Sequence[Example],
                     reward_functions: dict[str, Callable[..., list[float]]], config: RunConfig,
                     *, samples: int, batch_prompts: int = 16, success_reward: float = 1.0,
                     sampling: Sampling | None = None,
                     should_stop: Callable[[], bool] = lambda: False,
                     ) -> list[PromptSamples] | None:
    """Every example's scored samples (see scored_batches); None if stopped part-way."""
    results = [prompt for batch in scored_batches(
        backend, examples, reward_functions, config, samples=samples,
        batch_prompts=batch_prompts, success_reward=success_reward, sampling=sampling,
        should_stop=should_stop) for prompt in batch.prompts]
    return results if len(results) == len(examples) else None


def eval_metrics(prompts: Sequence[PromptSamples], pass_ks: Sequence[int],
                 maj_ks: Sequence[int]) -> dict[str, float]:
    """summarize()'s metrics under eval/, and how many prompts and samples they come from."""
    metrics = summarize(prompts, pass_ks=pass_ks, maj_ks=maj_ks)
    metrics.update(prompts=len(prompts), samples=len(prompts[0].correct))
    return {METRIC_PREFIX + key: value for key, value in metrics.items()}


def evaluation_examples(task: str, dataset: str, split: str, limit: int,
                        seed: int = 0) -> list[Example]:
    """The prompts an evaluation covers: the split of the dataset (or built-in task), the first
    `limit` (0 = all) in an order shuffled once by `seed`, so a smaller evaluation is a fair
    sample of a larger one and every checkpoint sees the same prompts."""
    if dataset:
        examples = list(split_examples(load_prompt_dataset(dataset).examples, split))
        where = f"the dataset's {split.replace('_', '-')} split"
    else:
        examples = list(get_task(task, split).examples)
        where = f"the {task} task's {split.replace('_', '-')} split"
    if not examples:
        raise DatasetFileError(f"There are no prompts in {where}.")
    random.Random(seed).shuffle(examples)
    return examples[:limit] if limit else examples


def evaluated_step(model: str) -> int:
    """The training step of a checkpoint folder, 0 for anything else (a base model). rlab's
    trainer writes "step" in the folder's trainer_state.json; transformers' Trainer (TRL's, in a
    script run) writes "global_step" in a file of the same name."""
    state = Path(model).expanduser() / checkpoints.TRAINER_STATE
    try:
        saved = json.loads(state.read_text())
        return int(saved["step"] if "step" in saved else saved["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def evaluate(config: EvalConfig, reporter: Reporter, *,
             should_stop: Callable[[], bool] = lambda: False) -> Outcome:
    """An evaluation job: every prompt's samples go out as rollouts at the evaluated step (one
    group per prompt, in order), progress counts prompts, and the metrics come at the end."""
    generation = config.generation_config()
    if not prepare_process(generation, reporter):
        return Outcome.FAILED
    device = torch.device(resolve_device(config.device))
    step = evaluated_step(config.model)
    try:
        examples = evaluation_examples(config.task, config.dataset, config.resolved_split,
                                       config.max_prompts, config.seed)
        loading = time.perf_counter()
        model, tokenizer = load_policy(config.model, dtype=torch.float32, device=device)
        backend = make_backend(generation, model, tokenizer, should_stop,
                               warn=lambda message: reporter.log(message, level="warning"))
    except (ModelNotFound, DatasetFileError, BackendUnavailable) as exc:
        reporter.error(str(exc))
        return Outcome.FAILED
    try:
        reporter.log(f"loaded {config.model} on {device} in "
                     f"{time.perf_counter() - loading:.1f} s; samples by {backend.name}")
        reporter.status("running", device=str(device), total_steps=len(examples))
        return _evaluate(config, reporter, should_stop, backend, generation, examples, step,
                         device)
    finally:
        backend.close()


def _evaluate(config: EvalConfig, reporter: Reporter, should_stop: Callable[[], bool],
              backend: RolloutBackend, generation: RunConfig, examples: list[Example], step: int,
              device: torch.device) -> Outcome:
    verifier = {config.verifier: VERIFIERS[config.verifier]}
    started = time.perf_counter()
    results: list[PromptSamples] = []
    for batch in scored_batches(backend, examples, verifier, generation, samples=config.samples,
                                batch_prompts=config.batch_prompts, should_stop=should_stop):
        reporter.rollouts(step, _sample_items(batch, first_group=len(results),
                                              samples=config.samples))
        results.extend(batch.prompts)
        reporter.progress(len(results), len(examples))
    if len(results) < len(examples):
        reporter.log(f"stopped on request after {len(results)} of {len(examples)} prompts")
        return Outcome.STOPPED
    elapsed = time.perf_counter() - started
    metrics = eval_metrics(results, parse_ks(config.pass_ks), parse_ks(config.maj_ks))
    tokens = sum(sum(p.lengths) for p in results)
    metrics.update({"perf/tokens_per_s": tokens / elapsed, "time/evaluation_s": elapsed,
                    **peak_memory(device)})
    reporter.metrics(step, metrics)
    headline = ", ".join(f"{key.removeprefix(METRIC_PREFIX)} {value:.3f}"
                         for key, value in metrics.items()
                         if key.startswith(METRIC_PREFIX) and "@" in key)
    reporter.log(f"evaluated {len(results)} prompts × {config.samples} samples in "
                 f"{elapsed:.1f} s: {headline}")
    return Outcome.COMPLETED


def _sample_items(batch: ScoredBatch, *, first_group: int, samples: int) -> list[dict[str, Any]]:
    """Every sample of the batch as a rollout item: one group per prompt, numbered across the
    whole evaluation; `extra` adds the answer the verifier read and whether it was correct."""
    items = []
    for i, (example, scored) in enumerate(zip(batch.examples, batch.prompts, strict=True)):
        all_same = len(set(scored.correct)) == 1
        for j in range(samples):
            row = i * samples + j
            answer = scored.answers[j]
            items.append(RolloutRecord(
                prompt=example.prompt, completion=batch.rollouts.texts[row],
                reward=scored.rewards[j],
                rewards={name: values[row].item() for name, values in batch.per_function.items()},
                advantage=None, group=first_group + i, sample_index=j,
                prompt_id=example.prompt_id, completion_tokens=scored.lengths[j],
                truncated=bool(batch.rollouts.truncated[row]),
                group_degenerate=all_same and samples > 1,
                extra={**example.columns, "correct": scored.correct[j],
                       "extracted_answer": None if answer is None else str(answer)},
            ).as_dict())
    return items
