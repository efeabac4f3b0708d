"""`train`: a RunConfig run to the end by its algorithm's loop, the online one
(training.loops.online) or, for an offline algorithm such as DPO, training.loops.offline."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from training.algorithms import engine_for
from training.loops.offline import OfflineTraining
from training.loops.online import OnlineTraining
from training.loops.setup import Outcome, prepare_process
from training.spec.config import RunConfig
from training.spec.events import Reporter


def train(config: RunConfig, reporter: Reporter, *,
          should_stop: Callable[[], bool] = lambda: False,
          output_dir: Path | None = None) -> Outcome:
    """Run `config` to the end, or until should_stop() is true between steps or micro-batches.
    Checkpoints go to `output_dir` (none without one). A problem with the run's settings (a
    missing model, a bad dataset) is reported as an error, not raised."""
    if not prepare_process(config, reporter):
        return Outcome.FAILED
    training = OfflineTraining if engine_for(config.algorithm).offline else OnlineTraining
    try:
        run = training(config, reporter, should_stop, output_dir)
    except training.SETUP_ERRORS as exc:
        reporter.error(str(exc))
        return Outcome.FAILED
    try:
        return run.loop()
    finally:
        run.close()
