"""`train`: a RunConfig run to the end by its algorithm's loop, the online one
(training.loops.online) or, for an offline algorithm such as DPO, training.loops.offline."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from training.algorithms import engine_for
from training.loops.offline import OfflineTraining
from training.loops.online import OnlineTraining
from training.loops.setup import Outcome, prepare_process
from training.parallel import World
from training.spec.config import RunConfig
from training.spec.events import Reporter


def train(config: RunConfig, reporter: Reporter, *,
          should_stop: Callable[[], bool] = lambda: False,
          output_dir: Path | None = None, world: World | None = None) -> Outcome:
    """Run `config` to the end, or until should_stop() is true between steps or micro-batches.
    Checkpoints go to `output_dir` (none without one). A problem with the run's settings (a
    missing model, a bad dataset) is reported as an error, not raised. `world`: this process's
    place among the run's processes under torchrun (training.parallel); online loop only."""
    if not prepare_process(config, reporter, world):
        return Outcome.FAILED
    offline = engine_for(config.algorithm).offline
    if offline and world is not None and world.distributed:
        reporter.error(f"{config.algorithm.upper()} trains on one device: set devices to 1.")
        return Outcome.FAILED
    training = OfflineTraining if offline else OnlineTraining
    try:
        run = (training(config, reporter, should_stop, output_dir) if offline
               else training(config, reporter, should_stop, output_dir, world))
    except training.SETUP_ERRORS as exc:
        reporter.error(str(exc))
        return Outcome.FAILED
    try:
        return run.loop()
    finally:
        run.close()
