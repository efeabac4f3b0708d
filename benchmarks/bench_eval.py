"""Evaluation benchmark (issue 6), run by `make bench-eval`; it prints figures, it asserts nothing.

Two parts, in one process:

    backends   one evaluation job (training.loops.evaluation.evaluate, as the worker's child runs
    it)
               of the built-in model on the two-digit task's held-out prompts, with the
               transformers backend and with vLLM, taking turns round by round: the time to
               sample and score (model loading and engine start-up apart), samples and
               completion tokens per second, and the metrics, which should agree within
               sampling noise.
    periodic   what evaluating during training costs: a GRPO run with eval_every, each
               evaluation's seconds against the mean training step's.

    python -m benchmarks.bench_eval                 # the whole benchmark (a few minutes)
    python -m benchmarks.bench_eval --quick         # a random 2-layer model: checks the script
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

from training.spec.config import DEFAULT_MODEL, RunConfig
from training.spec.evaluation_config import EvalConfig
from training.loops.evaluation import evaluate
from training.spec.events import ListReporter
from training.rollouts.generation import vllm_installed
from training.policies.loading import build_tiny_model
from training.loops.train import Outcome, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_eval",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a random 2-layer model")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="training steps of the periodic part")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    with TemporaryDirectory(prefix="bench-eval-") as scratch:
        model = str(build_tiny_model(Path(scratch) / "tiny")) if args.quick else DEFAULT_MODEL
        print(f"model {model}, {os.cpu_count()} CPU threads, torch {torch.__version__}\n")
        _backends(model, args)
        _periodic(model, args)
    return 0


def _backends(model: str, args: argparse.Namespace) -> None:
    backends = ["transformers"] + (["vllm"] if vllm_installed() else [])
    print(f"backends: {args.prompts} held-out two-digit sums × {args.samples} samples, "
          f"≤ {args.max_new_tokens} tokens, temperature 0.6, top-p 0.95, fp32, "
          f"{args.rounds} rounds taking turns")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in backends}
    for round_number in range(args.rounds):
        for name in backends:
            config = EvalConfig(model=model, task="arithmetic-2digit", samples=args.samples,
                                pass_ks=f"1, {args.samples}", maj_ks=str(args.samples),
                                max_new_tokens=args.max_new_tokens, max_prompts=args.prompts,
                                rollout_backend=name, seed=round_number)
            reporter = ListReporter()
            started = time.perf_counter()
            outcome = evaluate(config, reporter)
            if outcome is not Outcome.COMPLETED:
                raise SystemExit(f"{name}: {reporter.of_kind('error')}")
            values = reporter.of_kind("metrics")[0]["values"]
            values["wall_s"] = time.perf_counter() - started
            runs[name].append(values)
    print(f"{'backend':<14}{'sampling s':>11}{'job s':>8}{'samples/s':>11}{'tokens/s':>10}"
          f"{'pass@1':>8}{f'pass@{args.samples}':>8}{f'maj@{args.samples}':>7}"
          f"{'length':>8}")
    for name, values in runs.items():
        seconds = statistics.mean(v["time/evaluation_s"] for v in values)
        mean = {key: statistics.mean(v[key] for v in values) for key in values[0]}
        print(f"{name:<14}{seconds:>11.1f}{mean['wall_s']:>8.1f}"
              f"{args.prompts * args.samples / seconds:>11.1f}{mean['perf/tokens_per_s']:>10.1f}"
              f"{mean['eval/pass@1']:>8.3f}{mean[f'eval/pass@{args.samples}']:>8.3f}"
              f"{mean[f'eval/maj@{args.samples}']:>7.3f}{mean['eval/length/mean']:>8.1f}")
    if len(runs) == 2:
        ratio = (statistics.mean(v["time/evaluation_s"] for v in runs["transformers"])
                 / statistics.mean(v["time/evaluation_s"] for v in runs["vllm"]))
        print(f"vLLM samples {ratio:.2f}× as fast as transformers")
    print()


def _periodic(model: str, args: argparse.Namespace) -> None:
    config = RunConfig(model=model, rollout_backend="auto", max_steps=args.steps,
                       prompts_per_step=8, group_size=8, max_new_tokens=32, eval_every=2,
                       eval_prompts=8, eval_samples=4)
    print(f"periodic: GRPO, {args.steps} steps of 8 prompts × 8, eval_every 2 on the 8 held-out "
          f"one-digit sums × 4 samples")
    reporter = ListReporter()
    if train(config, reporter) is not Outcome.COMPLETED:
        raise SystemExit(f"periodic: {reporter.of_kind('error')}")
    steps = [e["values"]["time/step_s"] for e in reporter.of_kind("metrics")
             if "time/step_s" in e["values"]]
    evaluations = {e["step"]: e["values"] for e in reporter.of_kind("metrics")
                   if "eval/pass@1" in e["values"]}
    step_s = statistics.mean(steps)
    for step, values in sorted(evaluations.items()):
        print(f"  step {step}: evaluation {values['time/eval_s']:.1f} s "
              f"({values['time/eval_s'] / step_s:.2f} of a {step_s:.1f} s training step), "
              f"pass@1 {values['eval/pass@1']:.3f}, pass@4 {values['eval/pass@4']:.3f}, "
              f"maj@4 {values['eval/maj@4']:.3f}")
    total = sum(v["time/eval_s"] for v in evaluations.values())
    print(f"  evaluations took {total / (total + sum(steps)):.1%} of the run's step time")


if __name__ == "__main__":
    raise SystemExit(main())
