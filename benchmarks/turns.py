"""Runs that take turns, one training step each, so that they can be timed side by side on a
shared machine: whatever else loads the cores during the benchmark slows every run alike,
while no two steps ever run at the same time.

Each run lives in its own thread and brackets each of its steps with its `StepClock`: `begin`
waits for the run's turn, `end` records the step and hands the turn to the next run, round
robin. A run that finishes drops out of the rotation.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class Turns:
    """Whose turn it is, among named runs, round robin; the first name starts."""

    def __init__(self, names: list[str]):
        self._order = list(names)
        self._turn: str | None = self._order[0]
        self._finished: set[str] = set()
        self._changed = threading.Condition()

    def wait(self, name: str) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._turn == name)

    def pass_on(self, name: str) -> None:
        with self._changed:
            self._turn = self._after(name)
            self._changed.notify_all()

    def finish(self, name: str) -> None:
        with self._changed:
            self._finished.add(name)
            if self._turn == name:
                self._turn = self._after(name)
            self._changed.notify_all()

    def _after(self, name: str) -> str | None:
        """The next run that has not finished, `name` itself last; None when all have."""
        start = self._order.index(name)
        for offset in range(1, len(self._order) + 1):
            candidate = self._order[(start + offset) % len(self._order)]
            if candidate not in self._finished:
                return candidate
        return None


class StepClock:
    """One run's steps: wall-clock and process CPU seconds of each, from `begin` to `end`.

    `begin` may be called any number of times within a step (it opens the step once), so it
    can sit in a hook that runs often, such as a trainer's should_stop."""

    def __init__(self, turns: Turns, name: str):
        self.turns, self.name = turns, name
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._started: tuple[float, float] | None = None

    def begin(self) -> None:
        if self._started is None:
            self.turns.wait(self.name)
            self._started = (time.perf_counter(), time.process_time())

    def end(self) -> None:
        wall, cpu = self._started
        self.seconds.append(time.perf_counter() - wall)
        self.cpu_seconds.append(time.process_time() - cpu)
        self._started = None
        print(f"  {self.name}, step {len(self.seconds)}: {self.seconds[-1]:.1f} s", flush=True)
        self.turns.pass_on(self.name)

    def finish(self) -> None:
        self._started = None
        self.turns.finish(self.name)


def take_turns(runs: dict[str, Callable[[StepClock], object]]) -> dict[str, object]:
    """Run each `run(clock)` in its own thread, taking turns step by step in the given order;
    return what each returned (or the exception it raised), by name."""
    turns = Turns(list(runs))
    results: dict[str, object] = {}

    def body(name: str, run: Callable[[StepClock], object]) -> None:
        clock = StepClock(turns, name)
        try:
            clock.begin()  # setting up counts as part of the first (warm-up) step
            results[name] = run(clock)
        except Exception as exc:  # reported by the caller, which carries on with the others
            results[name] = exc
        finally:
            clock.finish()

    threads = [threading.Thread(target=body, args=(name, run), name=name)
               for name, run in runs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
