"""A tracked run seen from the training script: `log()` and `log_rollouts()` return at once. A
background thread writes what they buffered, in batches, to the run's spool every flush
interval, whatever the network does, so a process killed at any moment loses at most one
interval; another sends the spool to the server (see uploader.py for why nothing is lost or
stored twice) and heartbeats while there is nothing to send, so the server can tell a run whose
script died (it becomes crashed) from one that is quiet."""

from __future__ import annotations

import atexit
import json
import logging
import math
import operator
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from rlab.client import Backoff, Client, Rejected, RlabError, Transient
from rlab.spool import Spool, spool_root
from rlab.uploader import Uploader

log = logging.getLogger("rlab")

MAX_KEY_LENGTH = 250  # the server's, and MLflow's
MAX_BATCH_POINTS = 50_000  # half the server's limit per request: bodies of a few MB
MAX_ROLLOUTS = 10_000  # the server's limit per request


class Run:
    """Create one with `rlab.init()`. Usable as a context manager: leaving the block ends the run
    as succeeded, or as failed when an exception leaves it."""

    def __init__(self, *, client: Client, run_id: int, info: dict[str, Any] | None = None,
                 spool_dir: Path | None = None, flush_interval: float = 1.0,
                 flush_points: int = 10_000, retry_max_delay: float = 30.0,
                 finish_timeout: float = 120.0, heartbeat_interval: float = 30.0,
                 resume: bool = False):
        self.id = run_id
        self.info = info or {}
        self._flush_interval = flush_interval
        self._flush_points = flush_points
        self._finish_timeout = finish_timeout
        self._heartbeat_interval = heartbeat_interval
        self._spool = Spool.for_run(run_id, spool_dir)
        self._uploader = Uploader(client=client, spool=self._spool, run_id=run_id,
                                  backoff=Backoff(cap=retry_max_delay))
        self._lock = threading.Lock()  # guards what log() buffers
        self._spool_lock = threading.Lock()  # one writer of the spool at a time
        self._metrics: dict[str, dict[int, tuple[float, float]]] = {}  # key → step → (value, time)
        self._buffered = 0
        # (endpoint, body): rollouts, params, finish; and first, when resuming, the resume
        # itself, sent in order with the rest (after what an earlier process left).
        self._queued: list[tuple[str, bytes]] = [("resume", b"{}")] if resume else []
        self._next_step = 0
        self._skipped_keys: set[str] = set()
        self._finished = False
        self._wake = threading.Event()  # spool now: flush_points are buffered, or the end
        self._spooled = threading.Event()  # something new is in the spool
        self._spool_failed = False  # a write to the spool failed: what was logged is lost
        self._abandon = threading.Event()
        self._spooler = threading.Thread(target=self._spool_loop, name=f"rlab-spool-{run_id}",
                                         daemon=True)
        self._thread = threading.Thread(target=self._upload_loop, name=f"rlab-run-{run_id}",
                                        daemon=True)
        self._spooler.start()
        self._thread.start()
        atexit.register(self._at_exit)

    @property
    def url(self) -> str:
        """The run's page in the web app."""
        return self.info.get("url", "")

    @property
    def spool_dir(self) -> Path:
        return self._spool.directory

    @property
    def refused(self) -> list[str]:
        """The batches the server refused for good (a 4xx other than a retry), which are not
        stored: what each was, and the server's reason."""
        return list(self._uploader.refused)

    def __repr__(self) -> str:
        return f"<rlab.Run {self.id}>"

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.finish("failed" if exc_type else "succeeded")

    # Logging (the caller's thread: no network, no disk) --------------------------------------

    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        """Record metrics at `step`. Without a step, as in wandb: the step after the last one
        logged (0 at first). A (key, step) logged twice keeps the latest value, as the server
        and MLflow do. NaN and ±inf are skipped with a warning: the server stores finite values
        only."""
        now = time.time()
        points = []
        for key, value in data.items():
            if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
                raise ValueError(f"Metric key {key!r}: use a string of 1-{MAX_KEY_LENGTH} "
                                 "characters.")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"Metric {key!r}: {value!r} is not a number.") from None
            if math.isfinite(number):
                points.append((key, number))
            elif key not in self._skipped_keys:
                self._skipped_keys.add(key)
                log.warning("run %s: %s = %s is not stored (only finite values are); "
                            "further such values of %s are skipped silently", self.id, key,
                            number, key)
        with self._lock:
            self._ensure_open()
            step = self._next_step if step is None else _step(step)
            self._next_step = max(self._next_step, step + 1)
            for key, number in points:
                series = self._metrics.setdefault(key, {})
                self._buffered += step not in series
                series[step] = (number, now)
            full = self._buffered >= self._flush_points
        if full:
            self._wake.set()

    def log_rollouts(self, items: Iterable[Mapping[str, Any]], *, step: int) -> None:
        """Record one step's completions: dicts with prompt, completion, reward and optionally
        rewards, advantage, group, sample_index, prompt_id, completion_tokens, truncated, extra,
        tokens (see the API's RolloutIn). Each (step, group, sample_index) is stored once."""
        items = list(items)
        step = _step(step)
        # Serialised now: a value that cannot be sent fails here, in the caller's code, and
        # later changes to the dicts do not change what is sent.
        bodies = [json.dumps({"step": step, "items": items[start:start + MAX_ROLLOUTS]},
                             allow_nan=False).encode()
                  for start in range(0, len(items), MAX_ROLLOUTS)]
        self._enqueue([("rollouts", body) for body in bodies])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Add parameters (nested dicts flattened as `a.b`); each keeps its first value."""
        self._enqueue([("params", json.dumps({"params": flat_params(params)}).encode())])

    def _enqueue(self, batches: list[tuple[str, bytes]]) -> None:
        with self._lock:
            self._ensure_open()
            self._queued.extend(batches)

    def _ensure_open(self) -> None:
        if self._finished:
            raise RlabError(f"Run {self.id} has finished: log to a new run (rlab.init()).")

    # Ending -------------------------------------------------------------------------------------

    def finish(self, status: str = "succeeded", timeout: float | None = None) -> bool:
        """End the run as `status` (succeeded, failed or cancelled) once everything logged has
        reached the server, waiting at most `timeout` seconds (the run's finish_timeout when
        None). True when all was delivered and stored. False when something was not: what the
        server did not take in time stays in the spool, the end included, for
        `rlab.sync(run_id)` to send later; what it refused for good (`run.refused`: a value it
        cannot store, a run that had ended) is lost, and logged as a warning. Calling it again
        does nothing more."""
        if status not in ("succeeded", "failed", "cancelled"):
            raise ValueError(f"A run ends as succeeded, failed or cancelled, not {status!r}.")
        with self._lock:
            if self._finished:
                return len(self._spool) == 0 and not self._uploader.refused
            self._finished = True
            self._queued.append(("finish", json.dumps({"status": status}).encode()))
        atexit.unregister(self._at_exit)
        self._wake.set()
        self._spooler.join()
        self._thread.join(self._finish_timeout if timeout is None else timeout)
        self._abandon.set()
        delivered = len(self._spool) == 0 and not self._spool_failed
        if len(self._spool):
            log.warning("run %s: the server did not take everything in time; %d batches are "
                        "kept in %s. `rlab.sync(%s)` sends them, and ends the run, later.",
                        self.id, len(self._spool), self._spool.directory, self.id)
        if self._uploader.refused:
            log.warning("run %s: the server refused %d batches, which are not stored: %s",
                        self.id, len(self._uploader.refused),
                        "; ".join(self._uploader.refused))
        return delivered and not self._uploader.refused

    def _at_exit(self) -> None:
        self.finish("failed" if _uncaught_exception.is_set() else "succeeded")

    # The background threads ---------------------------------------------------------------------

    def _spool_loop(self) -> None:
        """Every flush_interval, or at once when flush_points are buffered or the run ends:
        whatever the uploads are doing (waiting on a server that is away, or slow)."""
        try:
            while True:
                self._wake.wait(self._flush_interval)
                self._wake.clear()
                self._spool_buffered()
                self._spooled.set()
                if self._all_spooled_after_finish():
                    return
        except Exception:
            self._spool_failed = True
            log.exception("run %s: could not write to the spool %s; what is logged from now on "
                          "is lost", self.id, self._spool.directory)

    def _upload_loop(self) -> None:
        try:
            while not self._abandon.is_set():
                self._spooled.wait(self._flush_interval)
                self._spooled.clear()
                if not self._uploader.drain(stop=self._abandon):
                    continue
                if not self._spooler.is_alive() and not self._spool.pending():
                    return  # the spooler ends once it spooled the run's end
                if self._uploader.heartbeat_due(self._heartbeat_interval):
                    self._uploader.heartbeat()
        except Exception:
            log.exception("run %s: uploads stopped; what was logged is kept in %s",
                          self.id, self._spool.directory)

    def _all_spooled_after_finish(self) -> bool:
        with self._lock:
            return self._finished and not self._metrics and not self._queued

    def _spool_buffered(self) -> None:
        """Move what log() buffered into the spool."""
        with self._spool_lock:
            with self._lock:
                metrics, self._metrics, self._buffered = self._metrics, {}, 0
                queued, self._queued = self._queued, []
            # Metrics first: the end of the run, if queued, must come after them; a resume
            # is queued before the process logs anything.
            if queued and queued[0][0] == "resume":
                self._spool.append(*queued.pop(0))
            for body in metric_batches(metrics):
                self._spool.append("metrics", body)
            for kind, body in queued:
                self._spool.append(kind, body)


def metric_batches(metrics: Mapping[str, Mapping[int, tuple[float, float]]],
                   limit: int = MAX_BATCH_POINTS) -> Iterator[bytes]:
    """The buffered points as request bodies in the columnar form, one series per key, at most
    `limit` points a body. Times are Unix seconds to the millisecond."""
    series: list[dict[str, Any]] = []
    count = 0
    for key, points in metrics.items():
        steps = list(points)
        for start in range(0, len(steps), limit):
            chunk = steps[start:start + limit]
            if series and count + len(chunk) > limit:
                yield json.dumps({"series": series}).encode()
                series, count = [], 0
            series.append({"key": key, "steps": chunk,
                           "values": [points[step][0] for step in chunk],
                           "times": [round(points[step][1], 3) for step in chunk]})
            count += len(chunk)
    if series:
        yield json.dumps({"series": series}).encode()


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Parameters as the server takes them, scalars by name: nested dicts become `a.b`, other
    values (lists, objects) their JSON or text.

    >>> flat_params({"lr": 1e-6, "model": {"name": "smol", "layers": [2, 4]}})
    {'lr': 1e-06, 'model.name': 'smol', 'model.layers': '[2, 4]'}
    """
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_params(value, f"{name}."))
        elif value is None or isinstance(value, (str, int, float, bool)):
            flat[name] = value
        else:
            try:
                flat[name] = json.dumps(value)
            except (TypeError, ValueError):
                flat[name] = str(value)
    return flat


def _step(step: Any) -> int:
    try:
        step = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an integer, not {step!r}.") from None
    if step < 0:
        raise ValueError(f"step must be 0 or more, not {step}.")
    return step


# An uncaught exception ends the script's run as failed when atexit finishes it.
_uncaught_exception = threading.Event()
_previous_excepthook = sys.excepthook


def _excepthook(exc_type, exc, traceback) -> None:
    _uncaught_exception.set()
    _previous_excepthook(exc_type, exc, traceback)


sys.excepthook = _excepthook


# Entry points -----------------------------------------------------------------------------------

def init(project: int | None = None, experiment: str = "", name: str = "",
         config: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None,
         url: str | None = None, token: str | None = None, *,
         resume_run_id: int | None = None, spool_dir: str | Path | None = None,
         init_timeout: float = 60.0, **options: Any) -> Run:
    """Start a tracked run of `experiment` (made on first use) in project `project`, or with
    `resume_run_id` go on logging to an existing run, sending first what an earlier process left
    in its spool; a run that had ended (crashed, failed, even succeeded) runs again, as MLflow's
    start_run(run_id=...) does. Resuming needs no server at that moment: the resume is the
    first batch spooled.

    In a process that rlab launched (a job template's command: RLAB_RUN_ID, RLAB_URL and the
    run's own RLAB_TOKEN are set), it logs into that run instead, whatever project and
    experiment say, so a script written for rlab.init logs unchanged into the run it was
    launched as; `config` is logged as its parameters, and the run's end stays its worker's
    (the process's exit code). Each process of a multi-process launch (RANK set) spools apart,
    under <spool>/rank-<RANK>. url and token default to RLAB_URL and RLAB_TOKEN; the spool to
    RLAB_SPOOL_DIR or ~/.cache/rlab/spool. Creating the run is retried for `init_timeout`
    seconds while the server cannot be reached. `options`: flush_interval (s), flush_points, retry_max_delay (s),
    finish_timeout (s), heartbeat_interval (s), passed to Run."""
    client = Client(url, token)
    root = Path(spool_dir) if spool_dir else spool_root()
    launched = launched_run_id() if resume_run_id is None else None
    if launched is not None and (rank := process_rank()):
        # The processes of one launch (torchrun, accelerate) log into the same run: each keeps
        # a spool of its own, which `rlab.sync(run_id, spool_dir=<root>/rank-<n>)` sends later.
        root = root / f"rank-{rank}"
    if resume_run_id is not None or launched is not None:
        run = Run(client=client, run_id=launched if resume_run_id is None else resume_run_id,
                  spool_dir=root, resume=launched is None, **options)
        if config:
            run.log_params(config)
        return run
    if project is None or not experiment:
        raise RlabError("rlab.init() needs project= (its id) and experiment= (a name), or "
                        "resume_run_id= to continue a run.")
    # One key for every try: a try whose answer was lost created the run the next one gets.
    body = json.dumps({"experiment": experiment, "name": name,
                       "params": flat_params(config or {}), "tags": dict(tags or {}),
                       "client_key": uuid.uuid4().hex}).encode()
    info = _create_run(client, f"/projects/{int(project)}/tracked-runs", body, init_timeout)
    return Run(client=client, run_id=info["id"], info=info, spool_dir=root, **options)


def launched_run_id() -> int | None:
    """The run rlab launched this process as (RLAB_RUN_ID), or None outside one."""
    value = os.environ.get("RLAB_RUN_ID", "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise RlabError(f"RLAB_RUN_ID is {value[:40]!r}, not a run's id: unset it, or set it "
                        "to the id of the run to log into.")
    return int(value)


def process_rank() -> int:
    """This process's rank in a multi-process launch (RANK, as torchrun and accelerate set
    it); 0 outside one."""
    value = os.environ.get("RANK", "").strip()
    return int(value) if value.isascii() and value.isdigit() else 0


def _create_run(client: Client, path: str, body: bytes, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    backoff = Backoff(cap=10.0)
    while True:
        try:
            return client.post(path, body)
        except Transient as exc:
            delay = backoff.next_delay()
            if time.monotonic() + delay > deadline:
                raise RlabError(f"Could not start a run: {client.url} did not answer for "
                                f"{timeout:.0f} s ({exc}). Is the server up, and RLAB_URL "
                                "right?") from exc
            time.sleep(delay)
        except Rejected as exc:
            raise RlabError(f"Could not start a run: {_explain(exc)}") from exc


def _explain(exc: Rejected) -> str:
    hints = {401: "the token was refused; check RLAB_TOKEN (revoked, or from another server?)",
             403: "your role in the project's team is too low; starting a run needs member",
             404: "no such project, or the token's user is not in its team"}
    return f"{hints.get(exc.status, 'the server refused it')} (HTTP {exc.status}: {exc.detail})"


def sync(run_id: int, url: str | None = None, token: str | None = None, *,
         spool_dir: str | Path | None = None, timeout: float | None = None) -> bool:
    """Send what a process that crashed or lost the server left in run `run_id`'s spool (its
    end included, if it got that far), retrying while the server cannot be reached, for at most
    `timeout` seconds (no limit when None). True once the spool is empty and the server stored
    it all; False when time ran out, or when it refused batches for good (logged)."""
    client = Client(url, token)
    spool = Spool.for_run(run_id, Path(spool_dir) if spool_dir else None)
    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set) if timeout is not None else None
    if timer:
        timer.daemon = True
        timer.start()
    uploader = Uploader(client=client, spool=spool, run_id=run_id, backoff=Backoff())
    try:
        drained = uploader.drain(stop=stop)
        if uploader.refused:
            log.warning("run %s: the server refused %d batches, which are not stored: %s",
                        run_id, len(uploader.refused), "; ".join(uploader.refused))
        return drained and not uploader.refused
    finally:
        if timer:
            timer.cancel()
