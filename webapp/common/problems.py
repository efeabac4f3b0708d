"""Problems a person can fix in an uploaded file, collected as the file is read: the first
MAX_ERRORS of them are told, the rest counted, so one bad file gets one clear answer."""

from __future__ import annotations

MAX_ERRORS = 10


class FileProblems(ValueError):
    """A file that cannot be used; `messages` says why, one problem each."""

    def __init__(self, messages: str | list[str], *, more: int = 0):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        if more:
            self.messages.append(f"… and {more} more {'problem' if more == 1 else 'problems'}.")
        super().__init__(" ".join(self.messages))


class ProblemList:
    """Collects the first MAX_ERRORS problems of a file (or of several) and counts the rest;
    `raise_any` raises them as `error(messages, more=...)`."""

    def __init__(self, error: type[FileProblems]) -> None:
        self.error = error
        self.messages: list[str] = []
        self.more = 0

    def add(self, message: str) -> None:
        if len(self.messages) < MAX_ERRORS:
            self.messages.append(message)
        else:
            self.more += 1

    def raise_any(self) -> None:
        if self.messages:
            raise self.error(self.messages, more=self.more)
