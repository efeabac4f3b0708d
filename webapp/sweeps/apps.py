"""Sweeps: a base experiment launched over search axes (a grid, random or log-uniform ranges,
seeds) by grid, random or Optuna's TPE search, with a median pruner on a chosen metric, a budget
of runs and a concurrency limit. The Optuna study lives in rlab's own database."""
import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class SweepsConfig(AppConfig):
    name = "webapp.sweeps"
    label = "sweeps"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from webapp.runs.ingestion import metrics_stored
        from webapp.runs.services import claim_check_register, run_ended
        from webapp.sweeps import services
        from webapp.sweeps.models import Sweep

        claim_check_register(services.sweep_wait_reason, held_back=services.sweeps_held_back)
        metrics_stored.connect(_metrics_stored, dispatch_uid="sweeps.pruner")
        run_ended.connect(_run_ended, dispatch_uid="sweeps.trial_end")
        post_delete.connect(_sweep_deleted, sender=Sweep, dispatch_uid="sweeps.study_delete")


# The runs' writers (a worker's relay, an API request) send these signals: a sweep's trouble is
# logged with the run's id, and never fails the write that sent it.

def _metrics_stored(sender, *, run_id: int, keys: frozenset[str], **kwargs) -> None:
    from webapp.sweeps.services import sweep_metrics_stored

    try:
        sweep_metrics_stored(run_id=run_id, keys=keys)
    except Exception:
        logger.exception("run %s: the sweep's pruner failed", run_id)


def _run_ended(sender, *, run_id: int, **kwargs) -> None:
    from webapp.sweeps.services import sweep_run_ended

    try:
        sweep_run_ended(run_id=run_id)
    except Exception:
        logger.exception("run %s: its sweep could not record its end", run_id)


def _sweep_deleted(sender, *, instance, **kwargs) -> None:
    """A sweep deleted (with its experiment or project) takes its study along once the deletion
    has committed: Optuna writes on a connection of its own, which must not wait on the
    deleting transaction."""
    from django.db import transaction

    from webapp.sweeps.study import study_delete

    study_name = instance.study_name
    transaction.on_commit(lambda: study_delete(study_name))
