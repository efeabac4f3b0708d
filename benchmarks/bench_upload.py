"""Upload benchmark (issue 14, finding 2), run by `make bench-upload`; it prints figures, it
asserts nothing.

Hostile files and good large ones go over HTTP, as a signed-in member's browser or script sends
them, to a real uvicorn process on a scratch Postgres database that it creates and drops:

    dataset uploads (/projects/<id>/datasets/new/, then the mapping step for a good file):
        a Parquet file of 4 million rows of two int8 columns (about 30 KB), a Parquet file whose
        one text repeats in every row (a few KB, 1 GB once decoded), a Parquet footer that lies
        about its sizes, a JSON line longer than a row may be, a CSV over the row limit, a good
        8 MB CSV and a good JSON lines file of about 48 MB
    rollout imports (/api/runs/<id>/rollouts/import): the same kinds of hostile files, and a
        good veRL dump of about 20 MB

Each file gets a fresh server, which first handles a small Parquet file (so that what any file
needs is loaded). The file's figures: the answer, the time of its requests, and the server's
peak resident memory while it handled them (VmHWM, reset just before) above its resident memory
before them (target: under MEMORY_TARGET_MB for every file, whatever the file).

    python -m benchmarks.bench_upload            # everything (a few minutes)
    python -m benchmarks.bench_upload --quick    # smaller good files: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from benchmarks.scratch import ADMIN_URL, rlab_django, scratch_database

DATABASE = "rlab_bench_upload"
MEMORY_TARGET_MB = 64
MiB = 2**20


@dataclass(frozen=True)
class Case:
    label: str
    target: str  # "dataset" or "import"
    filename: str
    make: Callable[[float], bytes]  # the file's bytes, at a scale
    query: str = ""  # the import endpoint's query string


def _warm_up_file(_: float) -> bytes:
    import pyarrow as pa

    from tests.webapp.datasets import hostile

    return hostile.parquet(pa.table({"step": [1, 1], "prompt": ["1 + 1?"] * 2,
                                     "completion": ["2", "3"], "answer": ["2", "2"],
                                     "reward": [1.0, 0.0]}))


# What each server handles first, so that its baseline has what any file needs loaded (pyarrow).
WARM_UP = Case("warm-up", "", "warm-up.parquet", _warm_up_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_upload",
                                     description="Memory and time of hostile and large uploads.")
    parser.add_argument("--postgres", default=ADMIN_URL,
                        help="a Postgres URL whose user may create databases "
                             f"(default {ADMIN_URL}); the scratch database is {DATABASE}")
    parser.add_argument("--quick", action="store_true",
                        help="good files of 1/10 the size: checks the script")
    args = parser.parse_args(argv)
    with scratch_database(args.postgres, DATABASE) as database_url, rlab_django(database_url), \
            TemporaryDirectory(prefix="bench-upload-") as scratch:
        _run(database_url, Path(scratch), scale=0.1 if args.quick else 1.0)
    return 0


def _cases() -> list[Case]:
    from tests.webapp.datasets import hostile

    def lying_footer(_: float) -> bytes:
        import pyarrow as pa

        good = hostile.parquet(pa.table({"prompt": ["1 + 1?"], "answer": ["2"],
                                         "step": [1], "completion": ["2"], "reward": [1.0]}))
        return hostile.with_footer(good, {hostile.COLUMN_TOTAL_UNCOMPRESSED_SIZE: 2**50})

    def long_line(size: int) -> Callable[[float], bytes]:
        return lambda _: (json.dumps({"prompt": "x" * size, "input": "x" * size, "answer": "1",
                                      "output": "1", "score": 1, "step": 1}).encode() + b"\n")

    return [
        Case("parquet: 4M rows of two int8 (30 KB)", "dataset", "rows.parquet",
             lambda _: hostile.many_small_rows(4_000_000)),
        Case("parquet: one 10 KB text in 100k rows", "dataset", "text.parquet",
             lambda _: hostile.repeated_text(100_000, 10_000, answer=["1"] * 100_000)),
        Case("parquet: footer says 1 PB", "dataset", "lies.parquet", lying_footer),
        Case("jsonl: a 2 MB line", "dataset", "long.jsonl", long_line(1 * MiB)),
        Case("csv: 1,000,001 rows", "dataset", "rows.csv",
             lambda _: b"prompt,answer\n" + b"p,1\n" * 1_000_001),
        Case("csv: good, 8 MB", "dataset", "sums.csv", _good_csv),
        Case("jsonl: good, 48 MB", "dataset", "sums.jsonl", _good_jsonl),
        Case("trl parquet: 4M rows of zeros (50 KB)", "import", "",
             lambda _: hostile.many_small_completions(4_000_000)),
        Case("trl parquet: one 10 KB text in 100k rows", "import", "",
             lambda _: hostile.repeated_text(100_000, 10_000, columns=("prompt", "completion"),
                                             step=[1] * 100_000, reward=[1.0] * 100_000)),
        Case("trl parquet: footer says 1 PB", "import", "", lying_footer),
        Case("verl jsonl: a 16 MB line", "import", "", long_line(8 * MiB), "?format=verl"),
        Case("verl jsonl: good, 20 MB", "import", "", _good_verl, "?format=verl"),
    ]


def _good_csv(scale: float) -> bytes:
    rows = int(120_000 * scale)
    return b"question,answer\n" + b"".join(
        b"Compute %d + %d. Give the final answer as a number at the end.,%d\n"
        % (n, n + 7, 2 * n + 7) for n in range(rows))


def _good_jsonl(scale: float) -> bytes:
    rows = int(110_000 * scale)
    story = "A farmer has some apples and buys more at the market. " * 7
    return b"".join(json.dumps({"question": f"{story}How many are {n} + {n + 3}?",
                                "answer": 2 * n + 3, "id": n}).encode() + b"\n"
                    for n in range(rows))


def _good_verl(scale: float) -> bytes:
    rows = int(40_000 * scale)
    return b"".join(json.dumps({
        "input": f"user\nWhat is {n // 8} + {n // 8 + 1}? Think step by step.\nassistant\n",
        "output": f"Adding the two numbers gives {2 * (n // 8) + 1}. " * 8 + f"#### {n}",
        "score": float(n % 2), "step": 1 + n // 10_000, "acc": bool(n % 2)}).encode() + b"\n"
        for n in range(rows))


def _run(database_url: str, scratch: Path, *, scale: float) -> None:
    import requests
    from django.contrib.auth import get_user_model

    from benchmarks.web_data import session_cookie
    from tests.stack import Process, free_port
    from webapp.api.tokens import token_create
    from webapp.config.web_server import uvicorn_command
    from webapp.projects.services import project_create
    from webapp.runs import tracking
    from webapp.teams.services import team_create

    user = get_user_model().objects.create_user("bench", password="bench-upload-2026")
    project = project_create(team=team_create(name="Bench", user=user), name="Bench",
                             description="", user=user)
    cookie = session_cookie(user)
    token = token_create(user=user, name="bench")[1]
    imports = tracking.tracked_experiment_get_or_create(project=project, user=user,
                                                        name="imports")
    warm_up = scratch / "warm-up.parquet"
    warm_up.write_bytes(WARM_UP.make(1.0))
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1",
           "RLAB_DATASET_DIR": str(scratch / "datasets")}
    print(f"rlab upload benchmark: Postgres ({DATABASE}), uvicorn, {os.cpu_count()} cores, "
          f"a fresh server per file; peak = the server's VmHWM while it handled the file, "
          f"above = that peak less its resident memory before (target < {MEMORY_TARGET_MB} MB)\n")
    print(f"{'file':44} {'size':>9} {'answer':>13} {'time':>8} {'peak':>8} {'above':>8}")
    for number, case in enumerate(_cases()):
        data = case.make(scale)
        path = scratch / f"file-{number}"
        path.write_bytes(data)
        del data
        port = free_port()
        web = Process(f"web-{number}", uvicorn_command(host="127.0.0.1", port=port,
                                                       extra=["--no-access-log"]), env, scratch)
        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        session.cookies.set(*cookie.split("=", 1))
        try:
            _wait_until_up(session, base, web)
            if case.target == "dataset":
                _dataset(session, base, project.pk, WARM_UP, warm_up, web.proc.pid,
                         f"warm-up {number}")
                answer, elapsed, before, peak = _dataset(session, base, project.pk, case, path,
                                                         web.proc.pid, f"file {number}")
            else:
                runs = [tracking.tracked_run_create(experiment=imports, user=user)
                        for _ in range(2)]
                _import(session, base, runs[0].pk, WARM_UP, warm_up, token, web.proc.pid)
                answer, elapsed, before, peak = _import(session, base, runs[1].pk, case, path,
                                                        token, web.proc.pid)
        finally:
            web.stop()
        above = peak - before
        verdict = "PASS" if above < MEMORY_TARGET_MB else "FAIL"
        print(f"{case.label:44} {_mb(path.stat().st_size):>9} {answer:>13} "
              f"{elapsed:>7.2f}s {peak:>6.0f}MB {above:>6.0f}MB {verdict}")
        path.unlink()


def _dataset(session, base: str, project_id: int, case: Case, path: Path, pid: int,
             name: str) -> tuple[str, float, float, float]:
    upload_url = f"{base}/projects/{project_id}/datasets/new/"
    csrf = _csrf(session.get(upload_url).text)
    before = _reset_peak(pid)
    started = time.perf_counter()
    with path.open("rb") as file:
        response = session.post(upload_url, data={
            "csrfmiddlewaretoken": csrf, "name": name, "kind": "prompts"},
            files={"file": (case.filename, file)}, allow_redirects=False)
    answer = str(response.status_code)
    if response.status_code == 302:  # the mapping step: the file is read again, normalised
        confirm_url = base + response.headers["Location"]
        page = session.get(confirm_url).text
        response = session.post(confirm_url, data={
            "csrfmiddlewaretoken": _csrf(page), **_selected(page), "name": name},
            allow_redirects=False)
        rows = re.search(r"([\d,]+) rows? of", page)
        answer = f"saved {rows.group(1) if rows else '?'}" \
            if response.status_code == 302 else f"mapping {response.status_code}"
    elif response.status_code != 200:
        answer = f"refused {response.status_code}"
    return answer, time.perf_counter() - started, before, _peak(pid)


def _import(session, base: str, run_id: int, case: Case, path: Path, token: str,
            pid: int) -> tuple[str, float, float, float]:
    before = _reset_peak(pid)
    started = time.perf_counter()
    with path.open("rb") as file:
        response = session.post(f"{base}/api/runs/{run_id}/rollouts/import{case.query}",
                                data=file, headers={"Authorization": f"Bearer {token}",
                                                    "Content-Type": "application/octet-stream"})
    elapsed = time.perf_counter() - started
    answer = (f"stored {response.json()['stored']:,}" if response.status_code == 200
              else f"refused {response.status_code}")
    return answer, elapsed, before, _peak(pid)


def _selected(page: str) -> dict[str, str]:
    """The mapping form's guesses: each role's selected column."""
    fields = {}
    for name, body in re.findall(r'<select name="(\w+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', body)
        fields[name] = chosen.group(1) if chosen else ""
    return fields


def _csrf(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if match is None:
        raise RuntimeError(f"no CSRF token in the page: {page[:300]!r}")
    return match.group(1)


def _wait_until_up(session, base: str, web) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if session.get(f"{base}/healthz", timeout=2).ok:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"uvicorn did not start:\n{web.output()[-3000:]}")


def _status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def _reset_peak(pid: int) -> float:
    """Start the process's peak memory afresh (Linux: clear_refs 5); its resident MB now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status(pid)["VmRSS"]


def _peak(pid: int) -> float:
    return _status(pid)["VmHWM"]


def _mb(size: int) -> str:
    return f"{size / MiB:.1f} MB" if size >= 100 * 1024 else f"{size / 1024:.0f} KB"


if __name__ == "__main__":
    sys.exit(main())
