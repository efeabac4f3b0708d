"""Writes for rollouts: storing the rollouts that an importer read from files
(webapp.rollouts.importers), through the same ingestion as a run's own (webapp.runs.services)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from webapp.runs.ingestion import rollouts_ingest
from webapp.runs.models import Rollout


def rollouts_import(*, run_id: int, steps: dict[int, list[dict[str, Any]]]) -> int:
    """Store several steps' rollouts (an importer's, webapp.rollouts.importers) in one transaction;
    how many were new: a rollout already stored is kept, so importing a file again adds none."""
    with transaction.atomic():
        imported = Rollout.objects.filter(run_id=run_id, step__in=list(steps))
        before = imported.count()
        for step, items in steps.items():
            rollouts_ingest(run_id=run_id, step=step, items=items)
        return imported.count() - before

