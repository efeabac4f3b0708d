"""Train from a config file, without the web app: `python -m training.cli config.yaml`.

The file holds RunConfig settings (YAML or JSON; any setting left out keeps its default), the
same ones the experiment form shows. Metrics and log lines are printed as they come; checkpoints
go to --output-dir. Exit status: 0 completed or stopped (Ctrl-C, between steps), 1 failed,
2 the config is invalid.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from training.spec.config import ConfigError, RunConfig


class PrintingReporter:
    """Prints a line per event: the step's headline metrics, logs, checkpoints, errors."""

    HEADLINE = ("reward/mean", "kl/mean", "loss/policy", "loss/dpo", "completion/length_mean",
                "time/step_s")

    def status(self, status: str, **fields: Any) -> None:
        print(f"status: {status} {fields}", flush=True)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        shown = "  ".join(f"{key} {values[key]:.4g}" for key in self.HEADLINE if key in values)
        print(f"step {step}: {shown}", flush=True)

    def rollouts(self, step: int, items: list[dict[str, Any]]) -> None:
        pass

    def progress(self, step: int, total_steps: int) -> None:
        pass

    def checkpoint(self, step: int, path: str, final: bool = False) -> None:
        print(f"checkpoint: {path}", flush=True)

    def log(self, message: str, level: str = "info") -> None:
        print(f"{level}: {message}", flush=True)

    def error(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)

    def done(self) -> None:
        print("done", flush=True)


def load_config(path: Path) -> RunConfig:
    """A RunConfig from a YAML or JSON file; ConfigError names every bad setting."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError({"file": f"{path} is not valid {path.suffix[1:] or 'YAML'}: {exc}"})
    if not isinstance(data, dict):
        raise ConfigError({"file": f"{path} must hold a mapping of settings"})
    return RunConfig.from_dict(data, paths=True)  # the file's author owns this machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.cli", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("config", type=Path, help="YAML or JSON file of RunConfig settings")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where checkpoints go (none without it)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except (OSError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from training.loops.train import Outcome, train  # torch loads here, after the config is valid
    from training.loops.setup import reuse_freed_memory

    reuse_freed_memory()  # as the worker's training process does

    stop = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    reporter = PrintingReporter()
    outcome = train(config, reporter, should_stop=lambda: stop, output_dir=args.output_dir)
    if outcome is Outcome.COMPLETED:
        reporter.done()
    return 1 if outcome is Outcome.FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
