import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class ApiConfig(AppConfig):
    name = "webapp.api"
    label = "api"

    def ready(self) -> None:
        from webapp.runs.services import run_ended

        run_ended.connect(_run_ended, dispatch_uid="api.run_tokens_revoke")


def _run_ended(sender, *, run_id: int, **kwargs) -> None:
    """A run's end revokes its tokens. Should this write fail, the token is still refused at
    every check (token_find looks at the run's status): the run's end is never undone by it."""
    from webapp.api.run_tokens import run_tokens_revoke

    try:
        run_tokens_revoke(run_id=run_id)
    except Exception:
        logger.exception("run %s: its tokens could not be revoked at its end", run_id)
