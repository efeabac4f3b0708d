"""Strict parsing of settings from the environment: a bad value stops start-up with a clear message."""

from __future__ import annotations

import ipaddress
import os
import re

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"Set the environment variable {name}.")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str) -> list[str]:
    """A comma-separated list of IP addresses or networks (`10.0.0.5`, `172.16.0.0/12`), each
    checked, so a typo stops start-up instead of silently matching nothing; none by default."""
    networks = []
    for item in env_list(name, []):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an IP address or network; use addresses like "
                f"10.0.0.5 or networks like 172.16.0.0/12, separated by commas.") from None
    return networks


# A CUDA device as CUDA_VISIBLE_DEVICES names it: an index, or a GPU's or MIG instance's UUID.
_DEVICE_ID = re.compile(r"[0-9]{1,4}|(?:GPU|MIG)-[A-Za-z0-9/-]{1,100}")
# The most devices one worker may give runs (a count beyond any machine is a typo).
MAX_WORKER_DEVICES = 1024


def devices_parse(text: str) -> int | list[str] | None:
    """A worker's devices as RLAB_WORKER_DEVICES gives them: None when empty (ask the machine),
    a count for a number ("2"), or the CUDA ids of a comma-separated list ("0,1,2,3"; "3," for
    GPU 3 alone). ValueError says what is wrong."""
    text = text.strip()
    if not text:
        return None
    if "," not in text:
        if text.isascii() and text.isdigit():
            count = int(text)
            if not 1 <= count <= MAX_WORKER_DEVICES:
                raise ValueError(f"a count of devices is between 1 and {MAX_WORKER_DEVICES} "
                                 f"(for GPU 0 alone write \"0,\")")
            return count
        items = [text]
    else:
        items = [item.strip() for item in text.split(",")]
        if items[-1] == "":
            items.pop()  # "3,": a list of one
    for item in items:
        if not _DEVICE_ID.fullmatch(item):
            raise ValueError(f"{item[:40]!r} is not a CUDA device id; give a count (\"2\") or "
                             f"GPU indices or UUIDs separated by commas (\"0,1\")")
    if len(set(items)) != len(items):
        raise ValueError("a device is listed twice")
    if len(items) > MAX_WORKER_DEVICES:
        raise ValueError(f"at most {MAX_WORKER_DEVICES} devices")
    return items


def env_devices(name: str) -> str:
    """A worker's devices (devices_parse), checked at start-up; the text, stripped."""
    raw = env_str(name, "")
    try:
        devices_parse(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw[:60]!r}: {exc}.") from None
    return raw.strip()
