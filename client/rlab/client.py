"""HTTP to rlab's REST API, and the line between failures worth retrying and those that are not.

Worth retrying (the server may answer later): no connection, a timeout, a 5xx, 408 and 429.
Never worth retrying: any other 4xx. The request was refused as it is (a bad value, a run that
has ended, a token that does not grant access), and sending it again would be refused again."""

from __future__ import annotations

import os
import random
from typing import Any

import requests

RETRYABLE_STATUSES = {408, 425, 429}
INVALID_TOKEN = "invalid or revoked token"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 120.0  # a 100k-point batch is COPYed in well under this


class RlabError(Exception):
    """Something the script's author has to act on: the message says what."""


class Transient(Exception):
    """The server could not be reached or could not answer now; try again later."""


class Rejected(RlabError):
    """The server refused the request for good. A 401 always says that the token is invalid
    or revoked, whoever answered it (rlab says so itself; a proxy in front of it may not)."""

    def __init__(self, status: int, detail: Any):
        if status == 401 and INVALID_TOKEN not in str(detail).lower():
            detail = (f"{INVALID_TOKEN}: set RLAB_TOKEN to an active token from the API tokens "
                      f"page ({detail})")
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {detail}")


class Client:
    def __init__(self, url: str | None = None, token: str | None = None):
        url = url or os.environ.get("RLAB_URL")
        token = token or os.environ.get("RLAB_TOKEN")
        if not url:
            raise RlabError("No rlab server: pass url= or set RLAB_URL "
                            "(e.g. http://127.0.0.1:8000).")
        if not token:
            raise RlabError("No API token: pass token= or set RLAB_TOKEN to a token made "
                            "under API tokens (top right of the web app).")
        self.url = url.rstrip("/")
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {token}",
                                      "Content-Type": "application/json"})

    def post(self, path: str, body: bytes) -> Any:
        """POST a JSON body to /api`path`; the decoded answer, or Transient or Rejected."""
        return self.request("post", path, data=body)

    def get(self, path: str, **params: Any) -> Any:
        """GET /api`path` with the parameters that are not None."""
        return self.request("get", path,
                            params={k: v for k, v in params.items() if v is not None})

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """/api`path`; the decoded answer. Transient: no answer, a 5xx or a status worth
        retrying; Rejected: any other 4xx."""
        try:
            response = self._session.request(method, f"{self.url}/api{path}",
                                             timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), **kwargs)
        except requests.RequestException as exc:
            raise Transient(f"cannot reach {self.url} ({type(exc).__name__}: {exc})") from exc
        if response.status_code >= 500 or response.status_code in RETRYABLE_STATUSES:
            raise Transient(f"{self.url} answered HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:500]
            raise Rejected(response.status_code, detail)
        return response.json() if response.content else None


class Backoff:
    """Exponential delays, capped, with jitter so that many clients of a server that comes back
    do not all retry in the same instant: base·2ⁿ, at most `cap`, each drawn from [½d, d]."""

    def __init__(self, base: float = 0.5, cap: float = 30.0):
        self.base, self.cap = base, cap
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * 2 ** self.failures)
        self.failures += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.failures = 0
