"""rlab's Python SDK: log a training script's metrics and rollouts to an rlab server.

    import rlab

    with rlab.init(project=3, experiment="trl-grpo", config={"lr": 1e-6}) as run:
        for step in range(100):
            run.log({"loss/policy": loss, "reward/mean": reward}, step=step)

log() never waits on the network: a background thread batches the points, writes each batch to
an on-disk spool and sends it, retrying while the server is away; `rlab.sync(run_id)` sends what
a crashed process left behind.
"""

from rlab.client import RlabError
from rlab.run import Run, init, sync

__all__ = ["Run", "RlabError", "init", "sync"]
