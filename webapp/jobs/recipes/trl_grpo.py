"""TRL's GRPOTrainer on a local model, as a script run launches it (the example job template
runs it under `accelerate launch`):

    accelerate launch --num_processes 2 trl_grpo.py --model_name_or_path /models/SmolLM2 \\
        --learning_rate 1e-6 --max_steps 50 --num_generations 8 --max_completion_length 32 \\
        --save_steps 10 --output_dir /runs/run-12-...

The options are named as TRL's and transformers' own (GRPOConfig), as the shipped template
(recipes/trl_grpo.json) passes them. On CPUs, add `--use_cpu` here and give accelerate
`--multi_gpu --num_machines 1 --mixed_precision no --dynamo_backend no`: `--multi_gpu` is what
makes it start N processes (through torchrun), which then train over gloo; accelerate's own
`--cpu` flag starts a single process unless MPI is installed.

It logs into the rlab run that launched it with nothing rlab-specific: `report_to="mlflow"` uses
MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN and MLFLOW_RUN_ID from the worker; with
`log_completions=True` TRL writes `<output-dir>/completions/completions_<step>.parquet`, which
the worker imports as the run's rollouts (template: rollouts format "trl", path "completions");
`checkpoint-<step>` folders in the output folder become the run's checkpoints (checkpoints path
"."). Nothing is downloaded: the model is a local folder, the prompts built in or a JSONL file.

Prompts: `--task sums` (one-digit sums, rewarded for the right answer as the completion's last
number) or `--prompts FILE.jsonl` with {"prompt": ..., "answer": ...} per line ("answer"
optional: without it the reward is `--reward length`, shorter is better). A resumed run passes
`--resume_from_checkpoint <checkpoint folder>`.

This file is a script, not a module of the web app: it imports torch and TRL, which the web app
and the worker never import (the folder is no package)."""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

SUMS_PROMPT = "Compute {a} + {b}. Give the final answer as a number at the end."
NUMBER = re.compile(r"-?\d+")


def sums_prompts(count: int, seed: int) -> list[dict[str, str]]:
    """One-digit sums: a task the base model gets right a quarter of the time, so GRPO's groups
    have signal from the first step.

    >>> sums_prompts(1, seed=0)[0]["answer"]
    '12'
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows.append({"prompt": SUMS_PROMPT.format(a=a, b=b), "answer": str(a + b)})
    return rows


def jsonl_prompts(path: Path) -> list[dict[str, str]]:
    rows = []
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise SystemExit(f"{path}, line {number}: expected {{\"prompt\": text, "
                                 "\"answer\": text}.")
            rows.append({"prompt": row["prompt"], "answer": str(row.get("answer", ""))})
    if not rows:
        raise SystemExit(f"{path} holds no prompts.")
    return rows


def correct(completions: list[str], answer: list[str], **_) -> list[float]:
    """1 when the completion's last number is the answer, else 0.

    >>> correct(["3 + 4 = 7", "it is 8", "no idea"], answer=["7", "7", "7"])
    [1.0, 0.0, 0.0]
    """
    scores = []
    for completion, expected in zip(completions, answer):
        numbers = NUMBER.findall(completion)
        scores.append(float(bool(numbers) and numbers[-1] == expected))
    return scores


def brevity(completions: list[str], **_) -> list[float]:
    """Shorter is better: minus the completion's length in hundreds of characters.

    >>> brevity(["abc", "a"])
    [-0.03, -0.01]
    """
    return [-len(completion) / 100 for completion in completions]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_name_or_path", required=True,
                        help="A local model folder (Hugging Face format).")
    parser.add_argument("--task", default="sums", choices=["sums"])
    parser.add_argument("--prompts", type=Path, help="A JSONL file of prompts (and answers).")
    parser.add_argument("--num_prompts", type=int, default=64, help="Of the built-in task.")
    parser.add_argument("--reward", default="", choices=["", "correct", "length"],
                        help="By default: correct when the prompts have answers, else length.")
    parser.add_argument("--learning_rate", type=float, default=1e-6)
    parser.add_argument("--max_steps", type=int, default=50)
    parser.add_argument("--per_device_train_batch_size", type=int, default=8,
                        help="Completions per process and step.")
    parser.add_argument("--num_generations", type=int, default=8,
                        help="G: completions per prompt.")
    parser.add_argument("--max_completion_length", type=int, default=32)
    parser.add_argument("--beta", type=float, default=0.0, help="The KL penalty's weight.")
    parser.add_argument("--output_dir", default=".")
    parser.add_argument("--save_steps", type=int, default=0,
                        help="Save a checkpoint every this many steps; 0: at the end only.")
    parser.add_argument("--resume_from_checkpoint", default=None,
                        help="A checkpoint folder of an earlier run to continue from.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--use_cpu", action="store_true", help="Train on the CPU (gloo).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = jsonl_prompts(args.prompts) if args.prompts else sums_prompts(args.num_prompts,
                                                                         args.seed)
    reward = args.reward or ("correct" if all(row["answer"] for row in rows) else "length")
    config = GRPOConfig(
        output_dir=args.output_dir, learning_rate=args.learning_rate, max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_train_batch_size,
        num_generations=args.num_generations, max_completion_length=args.max_completion_length,
        beta=args.beta,
        # transformers' Trainer also saves at the last step.
        save_strategy="steps", save_steps=args.save_steps or args.max_steps,
        logging_steps=1, log_completions=True, report_to=["mlflow"], use_cpu=args.use_cpu,
        disable_tqdm=True, seed=args.seed)
    trainer = GRPOTrainer(model=args.model_name_or_path, args=config,
                          train_dataset=Dataset.from_list(rows),
                          reward_funcs=[correct if reward == "correct" else brevity])
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)


if __name__ == "__main__":
    main()
