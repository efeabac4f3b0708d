"""GPU benchmark (issue 20), run by `make bench-gpu`; it prints figures, it asserts nothing.

Runs on any CUDA machine with nothing downloaded: each model is a Qwen2.5 configuration (the
shapes below) with random weights, so the work per token is that of the real model while no
weights are needed, and it talks through the SmolLM2 tokenizer that ships with rlab's
built-in model. A random policy samples tokens all over Qwen's 151,936-token vocabulary, most
of them beyond the tokenizer's 49,152, and almost never its end-of-turn token: every
completion runs to the token limit, which is what a throughput benchmark wants.

For each model, one part after the other, each on the same prompts and settings (bf16: fp32
weights and optimiser, bf16 autocast, as rlab's `dtype=bfloat16` and TRL's `bf16=True` do):

    rlab   rlab's GRPO step with the transformers backend
    vllm   rlab's GRPO step with the vLLM backend, when vLLM is installed
    trl    TRL's GRPOTrainer (benchmarks.trl_grpo), when TRL is installed

and prints generation tokens/s, the step's seconds by phase (from the trainer's own time/
metrics for rlab; generation and the rest for TRL), the update's model FLOPs utilisation
against a bf16 matmul timed in the same run, and peak GPU memory. Each part runs in a process
of its own (benchmarks.turns), so its peak is its own.

    python -m benchmarks.bench_gpu                        # both models, every part
    python -m benchmarks.bench_gpu --quick                # one measured step each
    python -m benchmarks.bench_gpu --models 0.5b --parts rlab,trl --steps 5
    python -m benchmarks.bench_gpu --allow-cpu --quick    # a tiny model on CPU: checks the script
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

from benchmarks.bench_train import run_rlab_grpo
from benchmarks.common import Measurement, Settings, prompt_tokens, step_examples, trained_tokens
from benchmarks.flops import MATMUL_ROUNDS, MATMUL_SIZE, flop, matmul_rate
from benchmarks.turns import StepClock, take_turns
from training.loops.setup import native_bf16
from training.policies.loading import resolve_model
from training.rollouts.generation import vllm_installed
from training.spec.tasks import Example

PARTS = ("rlab", "vllm", "trl")

# The published config.json of Qwen/Qwen2.5-0.5B and Qwen/Qwen2.5-1.5B (and their -Instruct
# twins, which share the shapes) on the Hugging Face Hub; the model cards give the totals
# checked by the last column: 0.49B and 1.54B parameters, embeddings tied. Qwen2 adds the
# attention's q/k/v biases itself. The context length is the Instruct models' (the 1.5B base
# model lists 131072); it sizes nothing here.
QWEN25_SHARED = dict(vocab_size=151936, tie_word_embeddings=True, hidden_act="silu",
                     rms_norm_eps=1e-6, rope_theta=1_000_000.0, max_position_embeddings=32768,
                     use_sliding_window=False, attention_dropout=0.0)
MODELS = {
    "0.5b": ("Qwen2.5-0.5B", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                  num_attention_heads=14, num_key_value_heads=2)),
    "1.5b": ("Qwen2.5-1.5B", dict(hidden_size=1536, intermediate_size=8960,
                                  num_hidden_layers=28, num_attention_heads=12,
                                  num_key_value_heads=2)),
}
# --allow-cpu: Qwen's vocabulary (so the out-of-vocabulary tokens take the same code path),
# 2 layers, heads of 32 (vLLM's CPU attention has no kernel for smaller ones).
TINY = ("a tiny Qwen2 (--allow-cpu)", dict(hidden_size=64, intermediate_size=128,
                                           num_hidden_layers=2, num_attention_heads=2,
                                           num_key_value_heads=1))


@dataclass
class Part:
    """One part's measured steps, and what the figures need beyond the Measurement."""

    measurement: Measurement
    trained_tokens: float  # prompt + completion tokens per step, padding left out
    peak_gpu_gb: float | None
    update_seconds: float | None  # the update alone (rlab), or None where not separable
    reference_seconds: float | None = None
    notes: list[str] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("no CUDA device: bench-gpu measures a GPU. `--allow-cpu` runs a tiny "
              "configuration on CPU instead, to check the script.", file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    where = torch.cuda.get_device_name() if cuda else "CPU (--allow-cpu: a smoke test, no GPU)"
    if not native_bf16(device):
        print(f"note: this {'GPU' if cuda else 'CPU'} has no native bf16 arithmetic (a GPU needs "
              f"compute capability 8.0 or later): bf16 is emulated, so the figures measure the "
              f"emulation", flush=True)
    peak = matmul_rate(device, torch.bfloat16)
    print(f"rlab GPU benchmark on {where}, bf16; torch {torch.__version__}; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"bf16 matmul ({MATMUL_SIZE[device]}³, best of {MATMUL_ROUNDS}): "
          f"{flop(peak)}/s measured, the MFU denominator below")
    models = [TINY] if not cuda else [MODELS[name] for name in args.models]
    with TemporaryDirectory(prefix="bench-gpu-") as scratch:
        for index, (name, shape) in enumerate(models):
            folder = Path(scratch) / f"model-{index}"
            params = build_model(folder, shape, device, args.seed)
            settings = Settings(
                model_dir=str(folder), prompts_per_step=args.prompts_per_step,
                group_size=args.group_size, max_new_tokens=args.max_new_tokens,
                learning_rate=args.learning_rate, beta=args.beta, warmup_steps=1,
                steps=args.steps, seed=args.seed, dtype="bfloat16", device=device)
            bench_model(name, params, settings, args.parts, peak)
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_gpu",
        description="rlab's GRPO step on a GPU, with random-weight Qwen2.5 models, against TRL.")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, from {', '.join(MODELS)} (default: both)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, from {', '.join(PARTS)} (default: all)")
    parser.add_argument("--steps", type=int, default=3,
                        help="measured steps, after one warm-up step (default 3)")
    parser.add_argument("--quick", action="store_true", help="one measured step")
    parser.add_argument("--prompts-per-step", type=int, default=None,
                        help="default 8 (2 with --allow-cpu)")
    parser.add_argument("--group-size", type=int, default=None,
                        help="default 8 (4 with --allow-cpu)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="default 256 (16 with --allow-cpu)")
    parser.add_argument("--learning-rate", type=float, default=1e-6)
    parser.add_argument("--beta", type=float, default=0.04,
                        help="KL coefficient (k3 estimator); > 0 adds the reference forward")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allow-cpu", action="store_true",
                        help="without CUDA, run a tiny configuration on CPU: checks the script")
    args = parser.parse_args(argv)
    args.models = _choices(parser, "--models", args.models, MODELS)
    args.parts = _choices(parser, "--parts", args.parts, PARTS)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.quick:
        args.steps = 1
    small = args.allow_cpu and not torch.cuda.is_available()
    for name, full, tiny in (("prompts_per_step", 8, 2), ("group_size", 8, 4),
                             ("max_new_tokens", 256, 16)):
        if getattr(args, name) is None:
            setattr(args, name, tiny if small else full)
        elif not 1 <= getattr(args, name) <= 4096:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 4096")
    return args


def _choices(parser: argparse.ArgumentParser, flag: str, value: str, known) -> list[str]:
    chosen = [item.strip().lower() for item in value.split(",") if item.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        parser.error(f"{flag}: unknown or none ({', '.join(unknown)}); choose from "
                     f"{', '.join(known)}")
    return list(dict.fromkeys(chosen))


# The model --------------------------------------------------------------------------------------

def build_model(folder: Path, shape: dict, device: str, seed: int) -> int:
    """Save a random-weight Qwen2 of `shape` with the SmolLM2 tokenizer to `folder` (bf16 on
    disk; each trainer loads it as it would a real checkpoint); return its parameter count,
    the tied embedding counted once (it is the output layer's matmul; the lookup costs
    nothing)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("builtin:smollm2-135m-instruct"))
    config = Qwen2Config(**QWEN25_SHARED, **shape, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    with torch.device(device):  # a 1.5B model initialises in seconds on the GPU, not minutes
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())  # shared tensors are listed once
    del model
    _free(device)
    return params


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# The parts --------------------------------------------------------------------------------------

def bench_model(name: str, params: int, settings: Settings, parts: list[str],
                peak: float) -> None:
    print(f"\n== {name}: {params / 1e9:.3f}B parameters, random weights; "
          f"{settings.prompts_per_step} prompts × {settings.group_size} completions, "
          f"≤ {settings.max_new_tokens} tokens, micro-batches of {settings.micro_batch_size}, "
          f"lr {settings.learning_rate:g}, β {settings.beta:g} (k3); {settings.steps} measured "
          f"step(s) after 1 warm-up\n", flush=True)
    examples = step_examples(settings)
    prompts = prompt_tokens(settings, examples)
    runs = {}
    for part in parts:
        if part == "rlab":
            runs["rlab (transformers)"] = functools.partial(
                rlab_part, settings, examples, backend="transformers", prompts=prompts)
        elif part == "vllm":
            if vllm_installed():
                runs["rlab (vllm)"] = functools.partial(rlab_part, settings, examples,
                                                        backend="vllm", prompts=prompts)
            else:
                print("rlab (vllm): vLLM not installed, skipped")
        elif importlib.util.find_spec("trl") is None:
            print("TRL GRPOTrainer: TRL not installed (pip install -e '.[dev]'), skipped")
        else:
            runs["TRL GRPOTrainer"] = functools.partial(trl_part, settings, examples,
                                                        prompts=prompts)
    results: dict[str, Part] = {}
    for label, run in runs.items():  # one after the other: peak memory is per part
        print(f"running {label} ...", flush=True)
        started = time.perf_counter()
        result = take_turns({label: run})[label]
        print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
        if isinstance(result, Exception):
            print(f"{label} failed: {type(result).__name__}: {result}")
        else:
            results[label] = result
    print()
    _print_table(results, params, peak)


def rlab_part(settings: Settings, examples: list[list[Example]], clock: StepClock,
              backend: str, prompts: list[int]) -> Part:
    """rlab's GRPO on `settings` (on the GPU), the steps after the warm-up; phases from the
    trainer's own time/ metrics (benchmarks.bench_train.rlab_phases)."""
    measurement = run_rlab_grpo(settings, examples, backend, clock)
    phases = measurement.phases
    return Part(measurement, trained_tokens(prompts, measurement.completion_tokens,
                                            settings.warmup_steps),
                _peak_gpu_gb(settings.device), phases["update"], phases["reference"],
                notes=["old log-probs: none apart, one pass per batch, so π_old is the "
                       "update's own forward"]
                + (["peak GPU memory includes the KV cache vLLM reserves up front"]
                   if backend == "vllm" else []))


def trl_part(settings: Settings, examples: list[list[Example]], clock: StepClock,
             prompts: list[int]) -> Part:
    """TRL's GRPOTrainer on the same settings; TRL times nothing by phase, so the step splits
    into generation (timed around its call) and the rest."""
    from benchmarks.trl_grpo import run_trl

    measurement = run_trl(settings, examples, clock)
    measurement.phases["rest: reference, update, scoring, bookkeeping"] = (
        measurement.seconds_per_step - measurement.phases["generate"])
    return Part(measurement, trained_tokens(prompts, measurement.completion_tokens,
                                            settings.warmup_steps),
                _peak_gpu_gb(settings.device), None, notes=measurement.notes)


def _peak_gpu_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


# The figures ------------------------------------------------------------------------------------

def _print_table(results: dict[str, Part], params: int, peak: float) -> None:
    for label, part in results.items():
        row = part.measurement
        generate = sum(row.generate_seconds) / len(row.generate_seconds)
        tokens = sum(row.completion_tokens) / len(row.completion_tokens)
        print(f"{label}: {row.seconds_per_step:.2f} s per step, {tokens:.0f} completion tokens "
              f"per step, {tokens / generate:,.0f} tokens/s generating, "
              f"{row.tokens_per_second:,.0f} tokens/s end to end")
        print("  s per step by phase: " + ", ".join(
            f"{name} {seconds:.3f}" for name, seconds in row.phases.items()))
        trained = part.trained_tokens
        if part.update_seconds:
            flops = 6 * params * trained
            print(f"  update: 6 × {params / 1e9:.3f}B params × {trained:,.0f} tokens = "
                  f"{flop(flops)} in {part.update_seconds:.3f} s: "
                  f"{flop(flops / part.update_seconds)}/s, MFU "
                  f"{flops / part.update_seconds / peak:.1%} of the measured matmul's "
                  f"{flop(peak)}/s")
        else:
            rest = row.seconds_per_step - generate
            flops = 8 * params * trained
            print(f"  outside generation: reference forward + update = 8 × {params / 1e9:.3f}B "
                  f"params × {trained:,.0f} tokens = {flop(flops)} in {rest:.3f} s: "
                  f"{flop(flops / rest)}/s, {flops / rest / peak:.1%} of the matmul (TRL "
                  f"times no phase apart, so the update's own MFU is not separable)")
        if part.reference_seconds:
            flops = 2 * params * trained
            print(f"  reference forward: 2 × params × tokens = {flop(flops)} in "
                  f"{part.reference_seconds:.3f} s: {flop(flops / part.reference_seconds)}/s, "
                  f"{flops / part.reference_seconds / peak:.1%} of the matmul")
        if part.peak_gpu_gb is not None:
            print(f"  peak GPU memory: {part.peak_gpu_gb:.1f} GiB "
                  f"(torch.cuda.max_memory_allocated in this part's process)")
        for note in part.notes:
            print(f"  note: {note}")
    if results:
        _print_summary(results, params, peak)


def _print_summary(results: dict[str, Part], params: int, peak: float) -> None:
    header = (f"{'':<22}{'s/step':>8}{'gen tok/s':>11}{'tok/s':>9}{'update MFU':>12}"
              f"{'peak GiB':>10}")
    print("\n" + header)
    print("-" * len(header))
    starred = False
    for label, part in results.items():
        row = part.measurement
        generate = sum(row.generate_seconds) / len(row.generate_seconds)
        tokens = sum(row.completion_tokens) / len(row.completion_tokens)
        if part.update_seconds:
            mfu = f"{6 * params * part.trained_tokens / part.update_seconds / peak:.1%}"
        else:
            starred = True
            rest = row.seconds_per_step - generate
            mfu = f"{8 * params * part.trained_tokens / rest / peak:.1%}*"
        memory = f"{part.peak_gpu_gb:.1f}" if part.peak_gpu_gb is not None else "-"
        print(f"{label:<22}{row.seconds_per_step:>8.2f}{tokens / generate:>11,.0f}"
              f"{row.tokens_per_second:>9,.0f}{mfu:>12}{memory:>10}")
    print(f"MFU against the measured bf16 matmul, {flop(peak)}/s.")
    if starred:
        print("* reference forward and update together, over the step's time outside "
              "generation.")
    print()


if __name__ == "__main__":
    sys.exit(main())
