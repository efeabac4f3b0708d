"""Runs that take turns, each in a spawned process of its own (benchmarks.turns): steps never
overlap, they go round robin, and a run that fails or dies leaves the rotation without holding
up the others."""

from __future__ import annotations

import os
import time

from benchmarks.turns import StepClock, apart, take_turns


def stepping(steps: int, clock: StepClock) -> list[tuple[float, float, int]]:
    """`steps` steps of a few milliseconds each: when each began and ended (a clock all
    processes share) and in which process."""
    spans = []
    for _ in range(steps):
        clock.begin()
        began = time.monotonic()
        time.sleep(0.02)
        spans.append((began, time.monotonic(), os.getpid()))
        clock.end()
    return spans


def failing(clock: StepClock) -> None:
    clock.begin()
    clock.end()
    raise ValueError("no such model")


def dying(clock: StepClock) -> None:
    clock.begin()
    clock.end()
    clock.begin()
    os._exit(3)  # killed mid-step, as by the kernel for memory: no outcome, no finish


def test_runs_take_turns_round_robin_in_processes_of_their_own():
    from functools import partial

    results = take_turns({"a": partial(stepping, 3), "b": partial(stepping, 2)})

    spans = sorted((began, ended, name, pid) for name, run in results.items()
                   for began, ended, pid in run)
    assert [name for _, _, name, _ in spans] == ["a", "b", "a", "b", "a"]
    assert all(ended <= next_began for (_, ended, *_), (next_began, *_) in zip(spans, spans[1:]))
    pids = {name: {pid for *_, n, pid in spans if n == name} for name in results}
    assert len(pids["a"]) == len(pids["b"]) == 1 and pids["a"] != pids["b"] != {os.getpid()}


def test_a_run_that_raises_or_dies_leaves_the_rotation_and_the_others_finish():
    from functools import partial

    results = take_turns({"raises": failing, "dies": dying, "steps": partial(stepping, 3)})

    assert isinstance(results["raises"], ValueError)
    assert str(results["raises"]) == "no such model"
    assert isinstance(results["dies"], RuntimeError)
    assert "exit code 3" in str(results["dies"])
    assert len(results["steps"]) == 3


def test_apart_returns_what_the_function_returns_from_another_process():
    assert apart(os.getpid) != os.getpid()


class EngineError(Exception):
    """An exception that pickles but cannot be rebuilt from its args, as some libraries' are."""

    def __init__(self, engine: str, reason: str):
        super().__init__(f"{engine}: {reason}")


def failing_oddly(clock: StepClock) -> None:
    clock.begin()
    raise EngineError("vllm", "no KV cache space")


def test_an_exception_that_does_not_unpickle_comes_back_named():
    result = take_turns({"odd": failing_oddly})["odd"]

    assert isinstance(result, RuntimeError)
    assert str(result) == "EngineError: vllm: no KV cache space"
