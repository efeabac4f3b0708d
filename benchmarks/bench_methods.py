"""Every algorithm on the same problem, run by `make bench-methods`: it prints a table, it asserts
nothing (issue 16).

Each method trains SmolLM2-135M-Instruct on the one-digit sums for the same number of steps and
the same number of completions per step (B prompts × G, or B·G prompts × 1 for SPO, or B·G/2
preference pairs for DPO), over several seeds; then an evaluation job samples its final
checkpoint on the held-out prompts. Per method, as mean ± std across seeds:

    reward      the training reward/mean over the last steps (DPO has none: its pairs are fixed)
    pass@1      held-out, k samples per prompt at the training temperature (1.0)
    pass@k      held-out
    length      the mean completion length in tokens over the run (held-out, for DPO)
    s/step      the mean seconds per training step

RMT trains on the shipped text corpus instead (it is a mid-training method on unlabelled text);
its own table reports next-token accuracy and reasoning length.

    python -m benchmarks.bench_methods                       # the whole table (tens of minutes)
    python -m benchmarks.bench_methods --quick               # a random 2-layer model: checks it
    python -m benchmarks.bench_methods --methods grpo,spo --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import torch

from training.loops.evaluation import evaluate
from training.loops.train import Outcome, train
from benchmarks.common import tiny_model
from training.policies.loading import resolve_model
from training.spec.config import RunConfig
from training.spec.evaluation_config import EvalConfig
from training.spec.events import ListReporter
from training.spec.tasks import get_task

TASK = "arithmetic"  # the one-digit sums
BUILTIN = "builtin:smollm2-135m-instruct"


@dataclass(frozen=True)
class Method:
    """One row of the table: an algorithm and the settings it runs with beyond the shared ones."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    data: str = ""  # a generated dataset it trains on: "preferences" or "sources"


METHODS = [
    Method("grpo"),
    Method("rloo"),
    Method("reinforce_pp", {"beta": 0.01, "kl_placement": "reward"}, "β = 0.01, KL in the reward"),
    Method("spo", {"prompt_sampler": "spo_priority"}, "B·G prompts × 1, priority sampling"),
    Method("ppo", {"beta": 0.01, "kl_placement": "reward"}, "β = 0.01, KL in the reward"),
    Method("dpo", {"algorithm": "dpo"}, "B·G/2 generated pairs per step", data="preferences"),
    Method("gtpo"),
    Method("prl", {"prl_step_length": 8}, "steps of 8 tokens"),
    Method("kdrl", {}, "teacher = the initial model (the only one shipped)"),
    Method("dph_rl"),
    Method("dump", {"algorithm": "grpo", "prompt_sampler": "dump"},
           "GRPO + DUMP over two sources: sums with and without a carry", data="sources"),
]


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    chosen = [m for m in METHODS if m.name in args.methods]
    with TemporaryDirectory(prefix="bench-methods-") as scratch:
        root = Path(scratch)
        model = tiny_model(root / "tiny") if args.quick else str(resolve_model(BUILTIN))
        name = "a random 2-layer model (--quick)" if args.quick else "SmolLM2-135M-Instruct"
        print(f"rlab methods benchmark: {name}, "
              f"{args.steps} steps of {args.prompts * args.group_size} completions "
              f"({args.prompts} prompts × {args.group_size}), seeds {args.seeds}, "
              f"{args.max_new_tokens} new tokens, lr {args.learning_rate:g}, CPU, "
              f"{torch.get_num_threads()} torch threads, rollouts by {args.rollout_backend}; "
              f"held-out: at most {args.eval_prompts} prompts × {args.eval_samples} samples at "
              f"temperature {args.eval_temperature:g}", flush=True)
        data = {"preferences": _preference_file(root / "preferences.jsonl"),
                "sources": _source_file(root / "sources.jsonl")}
        rows: dict[str, list[dict[str, float]]] = {}
        started = time.perf_counter()
        initial = _evaluate(model, args)
        print(f"initial model on {initial['prompts']:.0f} held-out prompts: pass@1 "
              f"{initial['pass@1']:.3f}, pass@{args.eval_samples} {initial['pass@k']:.3f}",
              flush=True)
        for method in chosen:
            for seed in args.seeds:
                config = _config(method, model, seed, args, data)
                print(f"{method.name} seed {seed} ...", flush=True)
                result = _run(config, root / f"{method.name}-{seed}", args)
                if result is not None:
                    rows.setdefault(method.name, []).append(result)
        print(f"\n{len(chosen)} methods × {len(args.seeds)} seeds in "
              f"{(time.perf_counter() - started) / 60:.0f} min\n")
        print(_table(chosen, rows, initial, args.eval_samples))
        if "rmt" in args.methods:
            print(_rmt_table([_rmt(model, seed, root / f"rmt-{seed}", args)
                              for seed in args.seeds]))
    return 0


def _rmt(model: str, seed: int, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    """RMT on the shipped corpus, B prompts × G as the others: its next-token accuracy and
    reasoning length over the last steps, its next-token loss at the first and last step."""
    print(f"rmt seed {seed} ...", flush=True)
    config = RunConfig.from_dict({
        "algorithm": "rmt", "task": "text_corpus", "model": model, "max_steps": args.steps,
        "prompts_per_step": args.prompts, "group_size": args.group_size,
        "max_new_tokens": args.max_new_tokens, "learning_rate": args.learning_rate,
        "seed": seed, "device": "cpu", "rollout_backend": args.rollout_backend,
        "checkpoint_every": 0, "rollouts_logged_per_step": 0}, paths=True)
    reporter = ListReporter()
    if train(config, reporter) is not Outcome.COMPLETED:
        raise RuntimeError(f"RMT failed: {reporter.of_kind('error')}")
    steps = [e["values"] for e in reporter.of_kind("metrics")]
    last = steps[-args.last_steps:]
    result = {"accuracy": statistics.fmean(s["rmt/next_token_accuracy"] for s in last),
              "length": statistics.fmean(s["rmt/reasoning_length"] for s in last),
              "ntp first": steps[0]["rmt/ntp_loss"], "ntp last": steps[-1]["rmt/ntp_loss"],
              "s/step": statistics.fmean(s["time/step_s"] for s in steps)}
    print("  " + ", ".join(f"{key} {value:.3f}" for key, value in result.items()), flush=True)
    return result


def _rmt_table(results: list[dict[str, float]]) -> str:
    keys = ["accuracy", "length", "ntp first", "ntp last", "s/step"]
    titles = ["next-token accuracy", "reasoning length", "NTP loss, step 1", "NTP loss, last",
              "s/step"]
    return "\n".join([
        "\nRMT on the shipped corpus (task text_corpus)\n",
        "| method | seeds | " + " | ".join(titles) + " |",
        "|---|---|" + "---|" * len(keys),
        f"| rmt | {len(results)} | "
        + " | ".join(_spread([r[key] for r in results]) for key in keys) + " |"])


def _config(method: Method, model: str, seed: int, args: argparse.Namespace,
            data: dict[str, Path]) -> RunConfig:
    prompts, group = args.prompts, args.group_size
    settings: dict[str, Any] = {"algorithm": method.name, **method.settings}
    if settings["algorithm"] == "spo":
        prompts, group = prompts * group, 1
    if settings["algorithm"] == "dpo":
        prompts, group = prompts * group // 2, 1
    if method.data:
        settings["dataset"] = str(data[method.data])
    if settings["algorithm"] == "kdrl":
        settings["kd_teacher"] = model
    return RunConfig.from_dict({
        "model": model, "task": TASK, "max_steps": args.steps, "prompts_per_step": prompts,
        "group_size": group, "max_new_tokens": args.max_new_tokens,
        "learning_rate": args.learning_rate, "seed": seed, "device": "cpu",
        "rollout_backend": args.rollout_backend, "checkpoint_every": 0,
        "rollouts_logged_per_step": 0, **settings}, paths=True)


def _run(config: RunConfig, folder: Path, args: argparse.Namespace) -> dict[str, float] | None:
    reporter = ListReporter()
    outcome = train(config, reporter, output_dir=folder)
    if outcome is not Outcome.COMPLETED:
        errors = [e["message"] for e in reporter.of_kind("error")]
        print(f"  {outcome.name.lower()}: {errors[-1] if errors else 'no error reported'}")
        return None
    steps = [e["values"] for e in reporter.of_kind("metrics") if "time/step_s" in e["values"]]
    last = steps[-args.last_steps:]
    final = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))[-1]
    held_out = _evaluate(str(final), args)
    result = {"s/step": statistics.fmean(s["time/step_s"] for s in steps), **held_out}
    if "reward/mean" in last[0]:
        result["reward"] = statistics.fmean(s["reward/mean"] for s in last)
    if "completion/length_mean" in steps[0]:
        result["length"] = statistics.fmean(s["completion/length_mean"] for s in steps)
    print("  " + ", ".join(f"{key} {value:.3f}" for key, value in result.items()), flush=True)
    return result


def _evaluate(model: str, args: argparse.Namespace) -> dict[str, float]:
    """pass@1, pass@k and the mean sample length of `model` on the held-out prompts."""
    config = EvalConfig.from_dict({
        "model": model, "task": TASK, "split": "held_out", "samples": args.eval_samples,
        "pass_ks": f"1, {args.eval_samples}", "maj_ks": "1", "max_prompts": args.eval_prompts,
        "max_new_tokens": args.max_new_tokens, "temperature": args.eval_temperature,
        "rollout_backend": args.rollout_backend, "device": "cpu"}, paths=True)
    reporter = ListReporter()
    if evaluate(config, reporter) is not Outcome.COMPLETED:
        raise RuntimeError(f"evaluating {model} failed: {reporter.of_kind('error')}")
    values = reporter.of_kind("metrics")[-1]["values"]
    lengths = [item["completion_tokens"] for event in reporter.of_kind("rollouts")
               for item in event["items"]]
    return {"pass@1": values["eval/pass@1"], "pass@k": values[f"eval/pass@{args.eval_samples}"],
            "held-out length": statistics.fmean(lengths), "prompts": values["eval/prompts"]}


def _table(methods: list[Method], rows: dict[str, list[dict[str, float]]],
           initial: dict[str, float], k: int) -> str:
    columns = [("reward", "reward"), ("pass@1", "pass@1"), ("pass@k", f"pass@{k}"),
               ("length", "length"), ("s/step", "s/step")]
    lines = ["| method | seeds | " + " | ".join(title for _, title in columns) + " | settings |",
             "|---|---|" + "---|" * len(columns) + "---|",
             f"| initial model | – | – | {initial['pass@1']:.3f} | {initial['pass@k']:.3f} | – "
             f"| – | |"]
    for method in methods:
        results = rows.get(method.name, [])
        cells = [_spread([r[key] for r in results if key in r]) for key, _ in columns]
        lines.append(f"| {method.name} | {len(results)} | " + " | ".join(cells)
                     + f" | {method.note} |")
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    """mean ± sample std, or the one value, or – when there is none."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def _preference_file(path: Path) -> Path:
    """Pairs for DPO on the task's training prompts: chosen states the right sum, rejected
    a wrong one, in the same words."""
    rng = random.Random(0)
    with path.open("w") as out:
        for example in get_task(TASK).examples:
            answer = int(example.columns["answer"])
            wrong = answer + rng.choice([-2, -1, 1, 2])
            out.write(json.dumps({"prompt": example.prompt,
                                  "chosen": f"The answer is {answer}.",
                                  "rejected": f"The answer is {wrong}."}) + "\n")
    return path


def _source_file(path: Path) -> Path:
    """The task's training prompts as a prompt dataset whose `source` column says whether the
    sum carries (a + b ≥ 10): the two distributions DUMP schedules."""
    with path.open("w") as out:
        for example in get_task(TASK).examples:
            answer = int(example.columns["answer"])
            out.write(json.dumps({"prompt": example.prompt, "answer": answer,
                                  "source": "carry" if answer >= 10 else "no carry"}) + "\n")
    return path


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join([m.name for m in METHODS] + ["rmt"]),
                        type=lambda text: text.split(","))
    parser.add_argument("--seeds", default="0,1,2",
                        type=lambda text: [int(s) for s in text.split(",")])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--last-steps", type=int, default=3,
                        help="the training reward is averaged over these last steps")
    parser.add_argument("--prompts", type=int, default=4, help="B, prompts per step")
    parser.add_argument("--group-size", type=int, default=4, help="G, completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--eval-prompts", type=int, default=32)
    parser.add_argument("--eval-samples", type=int, default=4, help="k of pass@k")
    parser.add_argument("--eval-temperature", type=float, default=1.0,
                        help="the training temperature: at 0.6 the initial model's pass@4 is 1")
    parser.add_argument("--rollout-backend", default="transformers", help="transformers by "
                        "default: with vLLM every run and evaluation starts an engine of its own",
                        choices=("auto", "transformers", "vllm"))
    parser.add_argument("--quick", action="store_true",
                        help="a random 2-layer model, 2 steps, one seed: checks the script")
    args = parser.parse_args(argv)
    unknown = set(args.methods) - {m.name for m in METHODS} - {"rmt"}
    if unknown:
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")
    if args.quick:
        args.steps, args.seeds, args.last_steps, args.eval_prompts = 2, [0], 1, 4
    return args


if __name__ == "__main__":
    sys.exit(main())
