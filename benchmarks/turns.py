"""Runs that take turns, one training step each, so that they can be timed side by side on a
shared machine: whatever else loads the cores during the benchmark slows every run alike,
while no two steps ever run at the same time.

Each run lives in its own process and brackets each of its steps with its `StepClock`: `begin`
hands the turn to the next run, round robin, and waits for the run's own; `end` records the
step. A run whose process has exited drops out of the rotation.

Processes, not threads: a training run owns its process in production (rlab's worker starts a
child for each), and runs that shared one would share its OpenMP and malloc state. With more
OpenMP threads in a process than cores, libgomp's idle workers spin 100 rounds instead of
300,000 before they sleep, so every parallel region then waits for a futex wake: with three
other threads that had used torch alive, a 16 × 576 · 576 × 1536 matmul took 364 µs against
289 µs alone, and each phase of a GRPO step ran about a third slower than in a process of its
own. A spawned process starts clean (nothing forked from a parent that holds vLLM's or
OpenMP's threads) and gets the parent's torch thread count and, as rlab's training process
does, an allocator that keeps what it frees (training.loops.setup.reuse_freed_memory).

What a run returns, or the exception it raised, comes back pickled: a run is a picklable
callable (a module-level function, or functools.partial of one), and so is its result.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, TypeVar

import torch

from training.loops.setup import reuse_freed_memory

_CONTEXT = multiprocessing.get_context("spawn")
T = TypeVar("T")


class Turns:
    """Whose turn it is, among named runs, round robin, shared by their processes; the first
    name starts. Each run has an event, set while it is its turn: a run that dies never
    holds up the others (a multiprocessing.Condition waits on every sleeper it wakes, a dead
    one included)."""

    def __init__(self, names: list[str]):
        self._order = list(names)
        self._lock = _CONTEXT.Lock()
        self._go = [_CONTEXT.Event() for _ in names]
        self._finished = _CONTEXT.Array("b", len(names), lock=False)  # guarded by _lock
        self._go[0].set()

    def wait(self, name: str) -> None:
        self._go[self._order.index(name)].wait()

    def pass_on(self, name: str) -> None:
        with self._lock:
            self._hand_on(self._order.index(name))

    def finish(self, name: str) -> None:
        index = self._order.index(name)
        with self._lock:
            self._finished[index] = 1
            if self._go[index].is_set():
                self._hand_on(index)

    def _hand_on(self, index: int) -> None:
        """From run `index` to the next that has not finished (itself last, if it has not)."""
        self._go[index].clear()
        for offset in range(1, len(self._order) + 1):
            candidate = (index + offset) % len(self._order)
            if not self._finished[candidate]:
                self._go[candidate].set()
                return


class StepClock:
    """One run's steps: wall-clock and process CPU seconds of each, from `begin` to `end`.

    The run keeps its turn from `begin` until its next `begin`, not just until `end`: what it
    does between two steps (a trainer's logging, the checks after its last step) is not
    timed, but it runs alone too. `begin` may be called any number of times within a step (it
    opens the step once), so it can sit in a hook that runs often, such as a trainer's
    should_stop."""

    def __init__(self, turns: Turns, name: str):
        self.turns, self.name = turns, name
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._started: tuple[float, float] | None = None
        self._holding = False  # the turn, which a step's end keeps until the next begin

    def begin(self) -> None:
        if self._started is None:
            if self._holding:
                self.turns.pass_on(self.name)
            self.turns.wait(self.name)
            self._holding = True
            self._started = (time.perf_counter(), time.process_time())

    def end(self) -> None:
        wall, cpu = self._started
        self.seconds.append(time.perf_counter() - wall)
        self.cpu_seconds.append(time.process_time() - cpu)
        self._started = None
        print(f"  {self.name}, step {len(self.seconds)}: {self.seconds[-1]:.1f} s", flush=True)


def take_turns(runs: dict[str, Callable[[StepClock], object]]) -> dict[str, object]:
    """Run each `run(clock)` in its own spawned process, taking turns step by step in the given
    order; return what each returned (or the exception it raised, or a RuntimeError saying how
    its process died), by name.

    A run leaves the rotation once its process has exited, not when its last step ends: what
    it does after that step, putting its outcome and tearing down its trainer and engine
    included, happens in its turn (`StepClock`, `_run`), so it slows nobody's step."""
    turns = Turns(list(runs))
    results = _CONTEXT.Queue()
    processes = {name: _CONTEXT.Process(target=_run, name=f"turns: {name}",
                                        args=(turns, name, run, results,
                                              torch.get_num_threads()))
                 for name, run in runs.items()}
    for process in processes.values():
        process.start()
    outcomes: dict[str, object] = {}
    exited: set[str] = set()
    while len(exited) < len(runs):
        try:
            name, outcome = results.get(timeout=0.2)
            outcomes[name] = outcome
        except queue.Empty:
            for name, process in processes.items():
                if name not in exited and process.exitcode is not None:
                    exited.add(name)
                    turns.finish(name)
    while len(outcomes) < len(runs):  # what the last to exit put on their way out
        try:
            name, outcome = results.get(timeout=1.0)
            outcomes[name] = outcome
        except queue.Empty:
            break
    for process in processes.values():
        process.join()
    return {name: outcomes.get(name, RuntimeError(f"{name}'s process ended with exit code "
                                                  f"{process.exitcode} and no outcome"))
            for name, process in processes.items()}


def apart(function: Callable[..., T], *args) -> T:
    """`function(*args)` in a spawned process of its own, as each run of `take_turns` is; what
    it returns comes back pickled, what it raises is raised here."""
    with ProcessPoolExecutor(max_workers=1, mp_context=_CONTEXT,
                             initializer=_prepare, initargs=(torch.get_num_threads(),)) as pool:
        return pool.submit(function, *args).result()


def _prepare(threads: int) -> None:
    """A run's process, set up as rlab's training process is."""
    reuse_freed_memory()
    torch.set_num_threads(threads)


def _run(turns: Turns, name: str, run: Callable[[StepClock], object],
         results: multiprocessing.Queue, threads: int) -> None:
    """One run, in its own process: its outcome goes on `results` as (name, outcome). It holds
    the turn from its first `begin` on, except while it waits for it, so it puts its outcome
    and exits in its turn (take_turns hands the turn on once the process has exited)."""
    _prepare(threads)
    clock = StepClock(turns, name)
    try:
        clock.begin()  # setting up counts as part of the first (warm-up) step
        outcome = run(clock)
    except Exception as exc:  # reported by the caller, which carries on with the others
        traceback.print_exc()
        outcome = exc
    results.put((name, _picklable(outcome)))


def _picklable(outcome: object) -> object:
    """The outcome itself where it pickles and unpickles; otherwise a RuntimeError naming it (an
    exception that holds a lock or an engine handle, or whose __init__ wants other arguments
    than it keeps)."""
    try:
        pickle.loads(pickle.dumps(outcome))
        return outcome
    except Exception:
        if isinstance(outcome, BaseException):
            return RuntimeError(f"{type(outcome).__name__}: {outcome}")
        return RuntimeError(f"the run returned a {type(outcome).__name__}, which does not "
                            f"pickle")
