"""An exception told in one line: what rlab's messages quote of a cause (a run's error, a file
that cannot be read, a model that cannot load). Torch-free: the web app uses it too."""

from __future__ import annotations


def first_line(exc: BaseException, *, limit: int = 300) -> str:
    """The first line of the exception's message, at most `limit` characters; its type's name
    when the message is empty."""
    return _message_line(exc)[:limit] or type(exc).__name__


def described(exc: BaseException, *, limit: int = 300) -> str:
    """"<type>: <first line>", or the type's name alone when the message is empty."""
    line = _message_line(exc)[:limit]
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _message_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else ""
