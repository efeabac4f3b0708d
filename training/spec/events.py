"""The Reporter interface, and the JSON-lines event protocol between a training child and its
worker.

Each event is one JSON object on one line. Kinds, with their fields:

    {"kind": "status", "status": "running", "device": "cpu", "total_steps": 30}
    {"kind": "metrics", "step": 3, "time": 1700000000.0, "values": {"reward/mean": 0.4, ...}}
    {"kind": "rollouts", "step": 3, "items": [RolloutRecord.as_dict(), ...]}
    {"kind": "progress", "step": 3, "total_steps": 30}
    {"kind": "checkpoint", "step": 10, "path": "/abs/run-dir/checkpoint-10", "final": false}
    {"kind": "log", "level": "info", "message": "loaded model in 2.1 s"}
    {"kind": "error", "message": "what went wrong, and what to do about it"}
    {"kind": "done"}

A run that ends without "done" or "error" (killed, crashed) is recorded as failed by the worker.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from typing import IO, Any, Protocol


@dataclass(frozen=True)
class RolloutRecord:
    """One logged completion: of a training step's rollouts, an evaluation's samples, or a DPO
    step's preference pairs (a pair's two replies are one group)."""

    prompt: str
    completion: str
    reward: float  # the weighted total (DPO: the implicit reward β (log π_θ − log π_ref))
    rewards: dict[str, float]  # each reward function's own score, by name
    advantage: float | None  # None where there is none (an evaluation's samples)
    group: int  # the prompt's index in the step; its completions share it
    sample_index: int  # the completion's index within its group
    prompt_id: str
    completion_tokens: int
    truncated: bool  # stopped by the token limit
    # Whether the whole group got equal rewards (no learning signal): only the first rollouts
    # are logged, so the web app cannot tell from the logged ones.
    group_degenerate: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # the dataset's other columns, and more
    # Per-token views, for a few completions: {"text": [...], "logprob": [...],
    # "entropy": [...], "kl": [...], "advantage": [...]}, a list each, and an algorithm's own
    # per-token values (GTPO's "conflict", PRL's "process").
    tokens: dict[str, list] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Reporter(Protocol):
    def status(self, status: str, **fields: Any) -> None: ...
    def metrics(self, step: int, values: dict[str, float]) -> None: ...
    def rollouts(self, step: int, items: list[dict[str, Any]]) -> None: ...
    def progress(self, step: int, total_steps: int) -> None: ...
    def checkpoint(self, step: int, path: str, final: bool = False) -> None: ...
    def log(self, message: str, level: str = "info") -> None: ...
    def error(self, message: str) -> None: ...
    def done(self) -> None: ...


class JsonLinesReporter:
    """Writes events to a text stream, one flushed line each; the worker reads the other end."""

    def __init__(self, stream: IO[str]):
        self._stream = stream

    def _emit(self, event: dict[str, Any]) -> None:
        self._stream.write(json.dumps(event, default=_jsonable, allow_nan=False) + "\n")
        self._stream.flush()

    def status(self, status: str, **fields: Any) -> None:
        self._emit({"kind": "status", "status": status, **fields})

    def metrics(self, step: int, values: dict[str, float]) -> None:
        finite = {k: float(v) for k, v in values.items() if math.isfinite(float(v))}
        self._emit({"kind": "metrics", "step": step, "time": time.time(), "values": finite})

    def rollouts(self, step: int, items: list[dict[str, Any]]) -> None:
        self._emit({"kind": "rollouts", "step": step, "items": items})

    def progress(self, step: int, total_steps: int) -> None:
        self._emit({"kind": "progress", "step": step, "total_steps": total_steps})

    def checkpoint(self, step: int, path: str, final: bool = False) -> None:
        self._emit({"kind": "checkpoint", "step": step, "path": path, "final": final})

    def log(self, message: str, level: str = "info") -> None:
        self._emit({"kind": "log", "level": level, "message": message})

    def error(self, message: str) -> None:
        self._emit({"kind": "error", "message": message})

    def done(self) -> None:
        self._emit({"kind": "done"})


class ListReporter:
    """Keeps events in memory: for running the trainer from a notebook or a test."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def _emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    status = JsonLinesReporter.status
    metrics = JsonLinesReporter.metrics
    rollouts = JsonLinesReporter.rollouts
    progress = JsonLinesReporter.progress
    checkpoint = JsonLinesReporter.checkpoint
    log = JsonLinesReporter.log
    error = JsonLinesReporter.error
    done = JsonLinesReporter.done

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
