"""CPU time of processes, for benchmarks that charge a server and Postgres for their work."""

from __future__ import annotations

import os
from pathlib import Path


def postgres_pids(database: str) -> list[int]:
    """The Postgres processes that work for `database`: its backends (their command line names
    the database) and the server's background processes (WAL writer, checkpointer...), which
    write what every backend inserts. Other databases' backends are left out."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() not in ("postgres", "postmaster"):
                continue
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        is_backend = "(" in title or " idle" in title or "127.0.0.1" in title or "[local]" in title
        if not is_backend or f" {database} " in title:
            pids.append(int(entry.name))
    return pids


def process_cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """User + system CPU seconds a process has used (0 if it is gone); with `reaped_children`,
    those of its children that have ended instead."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    first = 13 if reaped_children else 11  # cutime, cstime; or utime, stime
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(database: str) -> float:
    """CPU seconds of Postgres's work for `database` so far: its live processes (postgres_pids),
    and every backend that has ended, which the server's main process counts as it reaps them
    (a web server that connects per request leaves few backends alive to read). Ended backends
    of other databases count too: measure differences over a time when only one database
    works."""
    pids = postgres_pids(database)
    parents = {pid: _parent(pid) for pid in pids}
    main = [pid for pid, parent in parents.items() if parent not in parents]
    return (sum(process_cpu_seconds(pid) for pid in pids)
            + sum(process_cpu_seconds(pid, reaped_children=True) for pid in main))


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: a server's worker processes (uvicorn's, or those MLflow's
    server starts)."""
    children: dict[int | None, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            children.setdefault(_parent(int(entry.name)), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found
