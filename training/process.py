"""The training process a worker starts: `python -m training.process`.

Protocol: the worker writes one JSON object to stdin,
`{"run_id": 12, "job": "training", "config": {...}, "output_dir": "/abs/runs/run-12"}`
(output_dir optional: where checkpoints go; job "training", the default, with a RunConfig, or
"evaluation" with an EvalConfig: training.loops.evaluation), and reads events
(training.spec.events) from stdout, one JSON line each. Everything else the process or its
libraries print goes to stderr, so the event stream stays parseable.

Under torchrun, one process per device (worker.training_command), no process reads stdin: the
same object is in a file, `python -m training.process --request <file>`. Each process trains its
share (training.parallel); only the first (rank 0) reports events, and another one writes on
stdout only the `error` of its own failure. A process that loses a peer ends quietly (exit 1):
the peer that failed reports why, and torchrun ends the rest.

Ends with:
    exit 0 after a `done` event: the run (or evaluation) completed;
    exit 0 with no `done`: SIGTERM (or SIGINT) stopped it between steps, as asked;
    exit 1 after an `error` event: training failed (the traceback is on stderr);
    exit 2 after an `error` event: the request or its config was invalid.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import IO, Any

from training.spec.config import ConfigError, RunConfig
from training.spec.errors import described
from training.spec.evaluation_config import EvalConfig
from training.spec.events import JsonLinesReporter

PR_SET_PDEATHSIG = 1
JOBS = {"training": RunConfig, "evaluation": EvalConfig}
OUT_OF_MEMORY_HINT = ("Out of memory: lower micro_batch_size, prompts_per_step × group_size or "
                      "max_new_tokens, or use bfloat16.")


class _PipeReporter(JsonLinesReporter):
    """A reporter for a worker that may vanish: with no one reading, there is nothing to do."""

    def _emit(self, event: dict[str, Any]) -> None:
        try:
            super()._emit(event)
        except BrokenPipeError:
            os._exit(1)  # skips the interpreter's final flush, which would fail on the pipe again


class _ErrorsOnlyReporter(_PipeReporter):
    """A process other than the first of a run: it reports nothing but its own failure."""

    def _emit(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "error":
            super()._emit(event)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    events = _claim_stdout()
    from training.parallel import World, lost_peer  # imports torch: after the stdout swap

    world = World.from_environment()
    reporter = (_ErrorsOnlyReporter if world is not None and not world.is_main
                else _PipeReporter)(events)
    _die_with_parent()
    from training.loops.setup import reuse_freed_memory  # imports torch: after the stdout swap

    reuse_freed_memory()
    stop_requested = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        request = _read_request(_request_stream(argv))
        run_id = request.get("run_id")
        job = request.get("job", "training")
        if job not in JOBS:
            raise ValueError(f"unknown job {job!r}; known: {', '.join(JOBS)}")
        # The worker has turned the config's checkpoint: and local: references into folders.
        config = JOBS[job].from_dict(request["config"], paths=True)
        output_dir = Path(request["output_dir"]) if request.get("output_dir") else None
    except ConfigError as exc:
        if world is None or world.is_main:  # every process reads the same request
            reporter.error(f"Invalid {job} config: {exc}")
        return 2
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        reporter.error(f"Invalid request ({type(exc).__name__}: {exc}); expected "
                       f'{{"run_id": ..., "job": "training", "config": {{...}}, '
                       f'"output_dir": "..."}}')
        return 2

    # After the stdout swap: torch may print.
    from training.loops.evaluation import evaluate
    from training.loops.train import Outcome, train

    try:
        if isinstance(config, EvalConfig):
            outcome = evaluate(config, reporter, should_stop=lambda: stop_requested)
        else:
            outcome = train(config, reporter, should_stop=lambda: stop_requested,
                            output_dir=output_dir, world=world)
    except Exception as exc:
        if world is not None and lost_peer(exc):  # the process that failed reports why
            print(f"run {run_id}: rank {world.rank} stops, another process is gone: {exc}",
                  file=sys.stderr)
            return 1
        print(f"run {run_id}: {job} failed", file=sys.stderr)
        traceback.print_exc()
        reporter.error(_describe(exc))
        return 1
    if outcome is Outcome.FAILED:
        return 1
    if outcome is Outcome.COMPLETED:
        reporter.done()
    return 0


def _claim_stdout() -> IO[str]:
    """Keep the real stdout for events only; point fd 1 (print, C libraries) at stderr."""
    events_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(events_fd, "w", buffering=1, encoding="utf-8")


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies, so it never outlives a worker."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # best effort: the worker also kills the process group


def _request_stream(argv: list[str]) -> IO[str]:
    """stdin, or the file that `--request <file>` names."""
    if not argv:
        return sys.stdin
    if len(argv) != 2 or argv[0] != "--request":
        raise ValueError(f"unexpected arguments {argv!r}; give none, or --request <file>")
    return open(argv[1], encoding="utf-8")


def _read_request(stream: IO[str]) -> dict[str, Any]:
    """One JSON object, on one line or several; the worker need not close stdin after it."""
    text = ""
    for line in stream:
        text += line
        try:
            request = json.loads(text)
            break
        except json.JSONDecodeError as exc:
            if exc.pos < len(text.rstrip()):
                raise  # wrong, not merely unfinished
    else:
        request = json.loads(text)  # input ended: raises with what is missing
    if not isinstance(request, dict) or not isinstance(request.get("config"), dict):
        raise ValueError("the request must be an object with a 'config' object")
    return request


def _describe(exc: BaseException) -> str:
    """The exception's type and first line, with what to do when the cause is a known one."""
    import torch  # already loaded by the trainer

    message = described(exc)
    text = str(exc).lower()
    if (isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in text
            or "can't allocate memory" in text):
        message += f". {OUT_OF_MEMORY_HINT}"
    return message

if __name__ == "__main__":
    sys.exit(main())
