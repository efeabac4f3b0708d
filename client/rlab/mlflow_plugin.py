"""A request-header provider for MLflow's client (the entry point group
mlflow.request_header_provider), so that an MLflow script that dies ends its run in rlab as
failed.

MLflow's fluent API ends the active run from an atexit hook, as FINISHED, even when the script is
exiting on an uncaught exception; the server cannot tell that end from a clean one. By then
Python has recorded the exception in sys.last_value, so every call the client makes from then on
carries its type in X-Rlab-Script-Exception, and rlab's server ends the run as failed instead.
Interactive sessions are left out: there an earlier error stays in sys.last_value while the
session goes on, and the script's end is not an exit."""

from __future__ import annotations

import sys

HEADER = "X-Rlab-Script-Exception"


class ScriptExceptionHeader:
    """MLflow's RequestHeaderProvider interface: in_context() and request_headers()."""

    def in_context(self) -> bool:
        interactive = hasattr(sys, "ps1") or sys.flags.interactive or "IPython" in sys.modules
        return not interactive and _uncaught() is not None

    def request_headers(self) -> dict[str, str]:
        exception = _uncaught()
        if exception is None:
            return {}
        name = type(exception).__qualname__
        # A header is Latin-1 text on one line: an identifier may be any Unicode.
        return {HEADER: name.encode("ascii", "replace").decode()[:200]}


def _uncaught() -> BaseException | None:
    """The exception the script is exiting on, if any (a KeyboardInterrupt included: the server
    ends that run as cancelled). sys.exit() records none: its code is the script's own choice."""
    return getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
