"""What the trainers under comparison share: the settings, the prompts of every step, and the
per-step measurements, so both sides are timed and counted the same way."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from training.policies.loading import build_tiny_model
from training.rollouts.generation import prompt_texts
from training.spec.tasks import Example, get_task


@dataclass(frozen=True)
class Settings:
    """One GRPO configuration, given to both trainers."""

    model_dir: str  # a local Hugging Face folder (the built-in model, converted)
    prompts_per_step: int  # B
    group_size: int  # G: completions per prompt
    max_new_tokens: int
    learning_rate: float
    beta: float  # β of the k3 KL penalty to the frozen initial policy
    warmup_steps: int  # ≥ 1, run first and left out of the figures
    steps: int  # measured
    seed: int = 0
    temperature: float = 1.0
    task: str = "arithmetic"
    dtype: str = "float32"  # or "bfloat16": fp32 weights, bf16 autocast (and bf16 vLLM engine)
    device: str = "cpu"  # where both trainers run: "cpu", or "cuda" (benchmarks.bench_gpu)

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.steps

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.group_size

    @property
    def micro_batch_size(self) -> int:
        """Sequences per forward/backward pass: rlab's default of 16, or the whole step."""
        return min(16, self.completions_per_step)


def step_examples(settings: Settings) -> list[list[Example]]:
    """The prompts of each step, drawn as rlab's trainer draws them (one `Random(seed)`, one
    `task.sample` per step), so that TRL can be handed the same ones in the same order."""
    rng = random.Random(settings.seed)
    task = get_task(settings.task)
    return [task.sample(rng, settings.prompts_per_step) for _ in range(settings.total_steps)]


def prompt_tokens(settings: Settings, examples: list[list[Example]]) -> list[int]:
    """Prompt tokens of each step's completions (each prompt counted once per completion),
    in the chat template both trainers apply."""
    tokenizer = AutoTokenizer.from_pretrained(settings.model_dir)
    return [settings.group_size * sum(len(tokenizer(text, add_special_tokens=False).input_ids)
                                      for text in prompt_texts(tokenizer, step))
            for step in examples]


def trained_tokens(prompt_tokens: list[int], completion_tokens: list[int], warm: int) -> float:
    """Mean tokens a forward pass over the step's sequences covers, per measured step: prompts
    and completions, padding left out."""
    measured = prompt_tokens[warm:warm + len(completion_tokens)]
    return (sum(measured) + sum(completion_tokens)) / len(completion_tokens)


@dataclass
class Measurement:
    """Per measured step: wall-clock seconds, the CPU seconds this process used meanwhile,
    and completion tokens (EOS included)."""

    name: str
    step_seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    generate_seconds: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)  # mean reward of each measured step
    phases: dict[str, float] = field(default_factory=dict)  # mean seconds per step, by phase
    notes: list[str] = field(default_factory=list)

    @property
    def seconds_per_step(self) -> float:
        return sum(self.step_seconds) / len(self.step_seconds)

    @property
    def cpu_seconds_per_step(self) -> float:
        return sum(self.cpu_seconds) / len(self.cpu_seconds)

    @property
    def tokens_per_second(self) -> float:
        return sum(self.completion_tokens) / sum(self.step_seconds)

    @property
    def generate_share(self) -> float | None:
        """Fraction of the step spent generating, where measured."""
        if not self.generate_seconds:
            return None
        return sum(self.generate_seconds) / sum(self.step_seconds)


def tiny_model(folder: Path) -> str:
    """build_tiny_model's random model with 2 attention heads of 32 instead of 4 of 16, as
    vLLM's CPU attention has no kernel for heads of 16; the weights keep their shapes."""
    path = build_tiny_model(folder)
    config = AutoConfig.from_pretrained(path)
    config.num_attention_heads = config.num_key_value_heads = 2
    config.head_dim = 32
    config.save_pretrained(path)
    return str(path)
