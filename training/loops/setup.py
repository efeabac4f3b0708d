"""What every training loop (training.loops.online's online one, training.loops.offline's offline
one) does the same way: prepare the process, load the policy, build the optimiser, run the steps and
save checkpoints."""

from __future__ import annotations

import ctypes
import enum
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import get_scheduler, set_seed

from training import checkpoints
from training.samplers import dataset_columns
from training.spec.algorithms import TEXT_CORPUS, algorithm_spec
from training.parallel import World
from training.spec.config import RunConfig
from training.spec.prompt_dataset import load_prompt_dataset
from training.spec.tasks import get_task
from training.spec.text_corpus import text_corpus_task
from training.spec.events import Reporter
from training.policies.loading import ModelNotFound, load_policy


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters


class Outcome(enum.Enum):
    COMPLETED = "completed"  # ran max_steps
    STOPPED = "stopped"  # should_stop() turned true; the last finished step was reported
    FAILED = "failed"  # a user-fixable problem, already reported with reporter.error


def resolve_device(name: str) -> str:
    """'auto' becomes 'cuda' when a GPU is visible, else 'cpu'; other names pass through."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def reuse_freed_memory() -> None:
    """Have glibc's malloc keep the memory a process frees, for its next allocations.

    By default it serves each block over 32 MiB (a (V, H) gradient, a (tokens, V) log-softmax)
    with a fresh mmap and unmaps it when freed, and gives back the top of its heap; every step
    then faults its large tensors in again, page by page. A training process reuses the same
    shapes step after step, so it keeps what it had at its peak instead: a GRPO step of
    SmolLM2-135M on CPU went from 8.2 s to 7.2 s. This holds for the main thread's heap, where
    training runs; a thread's own arena still gives back its heaps once empty (the environment
    variable MALLOC_ARENA_MAX=1, read at start-up, puts every thread on the main heap). Best
    effort: other C libraries have no mallopt.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1))
    except (OSError, AttributeError):
        pass


def prepare_process(config: RunConfig, reporter: Reporter, world: World | None = None) -> bool:
    """Seed every generator and use every core (the run's processes on this host share them);
    False, reported, when the run asks for a GPU that this worker does not have."""
    world = world or World.single()
    set_seed(config.seed)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.local_size))
    if config.device == "cuda" and not torch.cuda.is_available():
        reporter.error("This worker has no CUDA GPU. Set device to 'auto' or 'cpu', "
                       "or launch the run on a GPU worker.")
        return False
    if config.dtype == "bfloat16" and not native_bf16(resolve_device(config.device)):
        reporter.log("This machine has no native bfloat16 arithmetic (a CPU needs AVX-512 BF16 "
                     "or AMX, a GPU compute capability 8.0 or later), so bf16 matrix multiplies "
                     "are emulated and run several times slower than float32 here: choose "
                     "float32 for this worker.", level="warning")
    return True


def native_bf16(device: str) -> bool:
    """Whether `device` ('cpu' or 'cuda') computes in bfloat16 natively: oneDNN's bf16 kernels
    on a CPU (AVX-512 BF16 or AMX; an AVX2 CPU runs a bf16 linear layer ~6× slower than fp32),
    a GPU of compute capability 8.0 or later."""
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(
            including_emulation=False)
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def load_task(config: RunConfig):
    """What a run trains on, as its algorithm reads data (AlgorithmSpec.trains_on): a text
    corpus, its dataset's or a built-in one (every passage of a dataset, the train split of a
    built-in corpus); or prompts, its dataset's or its built-in task's."""
    if algorithm_spec(config.algorithm).trains_on == TEXT_CORPUS:
        return text_corpus_task(config.dataset or config.task,
                                split="all" if config.dataset else "train")
    if config.dataset:  # with the columns the prompt sampler reads (DUMP's distributions)
        return load_prompt_dataset(config.dataset, dataset_columns(config))
    return get_task(config.task)


def load_run_policy(config: RunConfig, resumed: checkpoints.Checkpoint | None,
                    device: torch.device):
    """The policy to train and its tokenizer: the run's model, or the checkpoint's weights
    when a full fine-tune resumes (a LoRA run resumes its adapters on the run's model)."""
    source = config.model
    if resumed is not None and resumed.adapter is None:
        source = str(resumed.path)
    model, tokenizer = load_policy(source, dtype=torch.float32, device=device)
    if tokenizer.chat_template is None:
        raise ModelNotFound(f"{config.model!r} has no chat template, so its prompts cannot be "
                            f"formatted. Use an instruct or chat model.")
    return model, tokenizer


def make_optimizer(param_groups: list[dict[str, Any]], config: RunConfig, steps_per_step: int,
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW and the run's learning-rate schedule, stepped `steps_per_step` times per training
    step. No weight decay: pulling weights toward zero would pull the policy away from the
    pretrained one, which is what the KL term (when on) measures against. The fused AdamW
    updates all parameters in one kernel (2–4× faster than the per-tensor loop on CPU)."""
    optimizer = torch.optim.AdamW(param_groups, lr=config.learning_rate, weight_decay=0.0,
                                  fused=True)
    scheduler = get_scheduler(
        "constant_with_warmup" if config.lr_schedule == "constant" else config.lr_schedule,
        optimizer, num_warmup_steps=config.warmup_steps * steps_per_step,
        num_training_steps=config.max_steps * steps_per_step)
    return optimizer, scheduler


def peak_memory(device: torch.device) -> dict[str, float]:
    """The training process's peak resident memory (the in-process vLLM engine included) and,
    on CUDA, the peak memory torch allocated on the GPU, in GiB."""
    # ru_maxrss is in KiB on Linux
    peak = {"perf/peak_memory_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device.type == "cuda":
        peak["perf/peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return peak


def run_steps(config: RunConfig, reporter: Reporter, should_stop: Callable[[], bool], *,
              device: torch.device, first_step: int, step: Callable[[int], object | None],
              save_checkpoint: Callable[[int, bool], None] | None) -> Outcome:
    """Steps first_step … max_steps on `device`; `step` returns None when stopped part-way. A
    checkpoint every checkpoint_every steps and after the last, when `save_checkpoint` is
    given."""
    reporter.status("running", device=str(device), total_steps=config.max_steps)
    started = time.perf_counter()
    for number in range(first_step, config.max_steps + 1):
        if should_stop():
            reporter.log(f"stopped on request after step {number - 1}")
            return Outcome.STOPPED
        if step(number) is None:
            reporter.log(f"stopped on request during step {number}")
            return Outcome.STOPPED
        last = number == config.max_steps
        if save_checkpoint is not None and (
                last or config.checkpoint_every and number % config.checkpoint_every == 0):
            save_checkpoint(number, last)
    reporter.log(f"finished {config.max_steps} steps in {time.perf_counter() - started:.1f} s")
    return Outcome.COMPLETED


def save_checkpoint(output_dir: Path, step: int, *, final: bool, model, tokenizer,
                    state: dict[str, Any], tensors: dict[str, Any], config: RunConfig,
                    reporter: Reporter, weights: dict[str, torch.Tensor] | None = None) -> None:
    """Write a checkpoint (training.checkpoints) and report it. `weights`: the model's whole
    state dict when `model` holds only a shard of it."""
    saving = time.perf_counter()
    path = checkpoints.save(output_dir, step, model=model, tokenizer=tokenizer,
                            state={"config": config.to_dict(), **state}, tensors=tensors,
                            keep=config.keep_checkpoints, weights=weights)
    reporter.checkpoint(step, str(path), final=final)
    reporter.log(f"saved checkpoint {path.name} in {time.perf_counter() - saving:.1f} s")
