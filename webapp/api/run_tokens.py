"""A run's own token: what a script run's process logs with (RLAB_TOKEN, MLFLOW_TRACKING_TOKEN).
It acts as the user who launched the run, reaches only that run (webapp.api.run_scope), and only
until the run ends: the end revokes it (run_ended, connected in webapp.api.apps), and a token
whose run has ended is refused even if that write was lost (webapp.api.tokens.token_find)."""

from __future__ import annotations

import logging

from django.utils import timezone

from webapp.api.models import ApiToken
from webapp.api.tokens import token_create

logger = logging.getLogger(__name__)


def run_token_create(*, run) -> str:
    """A new token for `run`, returned once: it is never readable again."""
    return token_create(user=run.launched_by, name=f"run {run.pk}", run=run)[1]


def run_tokens_revoke(*, run_id: int) -> int:
    """Revoke the run's tokens that are still active; returns how many."""
    revoked = ApiToken.objects.filter(run_id=run_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now())
    if revoked:
        logger.info("run %s ended: its %d token(s) revoked", run_id, revoked)
    return revoked
