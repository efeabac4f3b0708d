"""A run's seed group: the runs launched from one config that differ only by their seed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Settings that say how a run was started, not what it is: runs that differ only in these are
# the same setting run again.
NOT_THE_SETTING = frozenset({"seed", "resume_from"})


def seed_group_of(config: dict[str, Any]) -> str:
    """A hash of `config` less its seed; "" for an empty config (a tracked run before it logs
    parameters).

    >>> seed_group_of({"lr": 1e-6, "seed": 1}) == seed_group_of({"seed": 2, "lr": 1e-6})
    True
    >>> seed_group_of({"lr": 1e-6, "seed": 1}) == seed_group_of({"lr": 2e-6, "seed": 1})
    False
    """
    kept = {key: value for key, value in config.items() if key not in NOT_THE_SETTING}
    if not kept:
        return ""
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
