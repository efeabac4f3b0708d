"""`train`: a RunConfig run to the end by its algorithm's loop, the online one
(training.loops.online) or, for an offline algorithm such as DPO, training.loops.offline."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from training.algorithms import engine_for
from training.loops.offline import train_offline
from training.loops.online import train_online
from training.loops.setup import Outcome
from training.spec.config import RunConfig
from training.spec.events import Reporter


def train(config: RunConfig, reporter: Reporter, *,
          should_stop: Callable[[], bool] = lambda: False,
          output_dir: Path | None = None) -> Outcome:
    """Run `config` to the end, or until should_stop() is true between steps or micro-batches.
    Checkpoints go to `output_dir` (none without one)."""
    loop = train_offline if engine_for(config.algorithm).offline else train_online
    return loop(config, reporter, should_stop=should_stop, output_dir=output_dir)
