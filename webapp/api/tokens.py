"""API tokens: `rlab_<prefix>_<secret>`. The prefix finds the row; the SHA-256 of the whole
token, compared in constant time, proves it. A high-entropy secret needs no slow hash: nothing
short enough to guess is ever hashed, and SHA-256 keeps each request's check fast."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from django.utils import timezone

from webapp.api.models import ApiToken

# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_PREFIX = re.compile(r"[0-9a-f]{1,16}")

# What every endpoint, REST or MLflow, answers a request without a token it accepts (a 401).
INVALID_TOKEN = "Missing, invalid or revoked token"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_create(*, user, name: str, run=None) -> tuple[ApiToken, str]:
    """A new token for `user` (a run's own when `run` is given: webapp.api.run_tokens); returns
    the row and the token, which is never readable again."""
    prefix = secrets.token_hex(6)
    token = f"rlab_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiToken.objects.create(user=user, name=name.strip()[:100] or "token", prefix=prefix,
                                  digest=_digest(token), run=run)
    return row, token


def token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now())


def token_find(token: str) -> ApiToken | None:
    """The token's row, with its user and its run, while it is accepted; None for anything else
    (malformed, unknown, revoked, its user inactive, or a run's token whose run has ended: the
    end revokes it (webapp.api.apps), and this refuses it too, should that write be lost)."""
    parts = token.strip().split("_", 2)
    # Only a token's own characters reach the database: no NUL, nothing to encode.
    if (len(parts) != 3 or parts[0] != "rlab" or not token.isascii()
            or not _PREFIX.fullmatch(parts[1])):
        return None
    row = (ApiToken.objects.select_related("user", "run__experiment")
           .filter(prefix=parts[1], revoked_at__isnull=True).first())
    if row is None or not hmac.compare_digest(row.digest, _digest(token.strip())):
        return None
    if not row.user.is_active or (row.run is not None and row.run.is_terminal):
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row


def token_user(token: str):
    """The active user a token belongs to, or None for a token that is not accepted
    (token_find)."""
    row = token_find(token)
    return None if row is None else row.user


def request_token(request, token: str) -> ApiToken | None:
    """token_find for a request, looked up once: the check of every request's token in front of
    the views (webapp.config.middleware: its refusal, and a run token's scope) and the
    endpoint's own authentication share it."""
    found = getattr(request, "_token_row", None)
    if found is not None and found[0] == token:
        return found[1]
    row = token_find(token)
    request._token_row = (token, row)
    return row


def request_token_user(request, token: str):
    """The user of request_token's row, or None."""
    row = request_token(request, token)
    return None if row is None else row.user
