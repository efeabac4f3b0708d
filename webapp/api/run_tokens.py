"""A run's own token: what a script run's process logs with (RLAB_TOKEN, MLFLOW_TRACKING_TOKEN).
It acts as the user who launched the run, reaches only that run, and only until the run ends."""

from __future__ import annotations

import secrets

from webapp.api.models import ApiToken
from webapp.api.tokens import _digest


def run_token_create(*, run) -> str:
    """A new token for `run`, returned once: it is never readable again."""
    prefix = secrets.token_hex(6)
    token = f"rlab_{prefix}_{secrets.token_urlsafe(32)}"
    ApiToken.objects.create(user_id=run.launched_by_id, run=run, name=f"run {run.pk}",
                            prefix=prefix, digest=_digest(token))
    return token
