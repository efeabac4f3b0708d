"""How checkpoint folders are named: checkpoint-<step>, one per saved step. Torch-free, so that
the web app reads a run's folder with the definition training writes it with.

>>> checkpoint_folder_name(12)
'checkpoint-12'
>>> [checkpoint_step(name) for name in ("checkpoint-12", "checkpoint-x", ".checkpoint-3-tmp")]
[12, None, None]
"""

from __future__ import annotations

import re

# At most 18 digits: a step the database's BIGINT holds.
_NAME = re.compile(r"checkpoint-([0-9]{1,18})")


def checkpoint_folder_name(step: int) -> str:
    return f"checkpoint-{step}"


def checkpoint_step(name: str) -> int | None:
    """The step of a checkpoint folder's name; None for any other name."""
    match = _NAME.fullmatch(name)
    return int(match[1]) if match else None
