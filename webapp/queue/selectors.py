"""Reads for the queue page, the workers page and the API: the queued runs in the order workers
take them, why each still waits, and the workers that are up.

The queue is the installation's, but a user sees only the runs of their own teams: another
team's runs are counted, never named (their experiments' names are that team's business)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from webapp.queue.models import Worker
from webapp.queue.services import run_priority_allowed
from webapp.runs.models import Run, RunStatus
from webapp.runs.services import (
    claim_checks_reason,
    project_limit_reason,
    runs_holding_places,
)
from webapp.teams.models import Membership

# A worker reports itself at each housekeeping pass; one that missed this many passes is taken
# for gone (killed, its machine down): "silent", and no help to a waiting run.
SILENT_AFTER_PASSES = 3
# The most runs of one queue a page lists (the first in the queue's order); the rest are
# counted.
SHOWN_PER_QUEUE = 200


def silent_before(now: datetime | None = None) -> datetime:
    """Workers whose last report is older than this are silent."""
    now = now or timezone.now()
    return now - timedelta(seconds=SILENT_AFTER_PASSES * settings.RLAB_HOUSEKEEPING_SECONDS)


def live_workers(now: datetime | None = None) -> QuerySet[Worker]:
    return Worker.objects.filter(heartbeat_at__gte=silent_before(now))


@dataclass
class Capacity:
    """The live workers of one queue, how many of their slots runs take, and the most devices
    one of them has, and has free (None where no worker reported its devices)."""

    workers: int = 0
    slots: int = 0
    busy: int = 0
    most_devices: int | None = None
    most_free_devices: int | None = None

    @property
    def free(self) -> int:
        return max(self.slots - self.busy, 0)

    def add_devices(self, *, devices: int, free: int) -> None:
        self.most_devices = max(self.most_devices or 0, devices)
        self.most_free_devices = max(self.most_free_devices or 0, free)


def queue_capacity(now: datetime | None = None) -> dict[str, Capacity]:
    """Per queue, its live workers and their slots, and the slots runs take (a worker that
    consumes two queues counts in both: its slots serve either); and their devices."""
    workers = list(live_workers(now))
    holding = list(runs_holding_places().filter(worker__in=[w.name for w in workers])
                   .values_list("worker", "device_ids"))
    busy = Counter(name for name, _ in holding)
    held: dict[str, set[str]] = defaultdict(set)
    for name, ids in holding:
        held[name].update(map(str, ids if isinstance(ids, list) else []))
    capacity: dict[str, Capacity] = defaultdict(Capacity)
    for worker in workers:
        for queue in worker.queues:
            capacity[queue].workers += 1
            capacity[queue].slots += worker.slots
            capacity[queue].busy += min(busy[worker.name], worker.slots)
            if worker.devices:  # a worker that reports none predates devices: not counted
                capacity[queue].add_devices(devices=len(worker.devices), free=len(
                    [d for d in worker.devices if d not in held[worker.name]]))
    return capacity


def _devices(count: int) -> str:
    return f"{count} device{'s' if count != 1 else ''}"


def _roles(user) -> dict[int, str]:
    """The user's role in each of their teams."""
    return dict(Membership.objects.filter(user_id=user.pk).order_by()
                .values_list("team_id", "role"))


def wait_reason(run: Run, *, capacity: dict[str, Capacity], active: dict[int, int],
                checks: bool = True) -> str | None:
    """Why the queued `run` has not started: the broker never took it, no live worker consumes
    its queue, no worker of its queue has the devices it needs, its project's limit, a
    registered check (a sweep's), every slot of its queue is taken, or no worker has its
    devices free; None when a worker should take it now. `active`: the runs holding places, per
    project id."""
    if run.enqueued_at is None:
        return ("Waiting for the broker: it could not be reached at launch; the workers send "
                "the run again when it answers.")
    queue = capacity.get(run.queue, Capacity())
    if not queue.workers:
        return f"No worker consumes queue {run.queue}: start one with -Q {run.queue}."
    if queue.most_devices is not None and run.devices_needed > queue.most_devices:
        return (f"Needs {_devices(run.devices_needed)}; the workers of queue {run.queue} have "
                f"at most {queue.most_devices}. It starts when a worker with more joins the "
                f"queue.")
    project = run.experiment.project
    reason = project_limit_reason(project=project, active=active.get(project.pk, 0))
    if reason is None and checks:
        reason = claim_checks_reason(run)
    if reason:
        return reason
    if not queue.free:
        return (f"All {queue.workers} worker{'s' if queue.workers != 1 else ''} of this queue "
                f"{'are' if queue.workers != 1 else 'is'} busy "
                f"({queue.slots} slot{'s' if queue.slots != 1 else ''}).")
    if queue.most_free_devices is not None and run.devices_needed > queue.most_free_devices:
        return (f"Needs {_devices(run.devices_needed)}; no worker of queue {run.queue} has "
                f"that many free now (at most {queue.most_free_devices}).")
    return None


def _active_per_project(project_ids) -> dict[int, int]:
    return Counter(runs_holding_places().filter(experiment__project_id__in=list(project_ids))
                   .values_list("experiment__project_id", flat=True))


@dataclass
class QueuedEntry:
    position: int
    run: Run
    reason: str | None
    can_steer: bool


@dataclass
class QueueSection:
    """One queue (cpu, gpu): its queued runs the user may see, in the order workers take them,
    with their places among all of the queue's runs."""

    name: str
    capacity: Capacity
    entries: list[QueuedEntry] = field(default_factory=list)
    total: int = 0
    hidden: int = 0  # queued runs of other teams
    not_shown: int = 0  # the user's runs past SHOWN_PER_QUEUE


def queue_sections(user, now: datetime | None = None) -> list[QueueSection]:
    """The installation's queues, each with the queued runs `user` may see."""
    roles = _roles(user)
    capacity = queue_capacity(now)
    order = (Run.objects.filter(status=RunStatus.QUEUED).exclude(queue="")
             .order_by("queue", "-priority", "created_at", "pk")
             .values_list("pk", "queue", "experiment__project__team_id"))
    sections: dict[str, QueueSection] = {
        name: QueueSection(name=name, capacity=capacity[name]) for name in sorted(capacity)}
    places: dict[int, int] = {}
    shown: Counter[str] = Counter()
    for run_id, queue, team_id in order:
        section = sections.setdefault(queue, QueueSection(name=queue, capacity=capacity[queue]))
        section.total += 1
        if team_id not in roles:
            section.hidden += 1
        elif shown[queue] < SHOWN_PER_QUEUE:
            shown[queue] += 1
            places[run_id] = section.total
        else:
            section.not_shown += 1
    runs = Run.objects.filter(pk__in=list(places)).select_related(
        "experiment__project", "launched_by")
    active = _active_per_project({run.experiment.project_id for run in runs})
    for run in runs:
        entry = QueuedEntry(position=places[run.pk], run=run,
                            reason=wait_reason(run, capacity=capacity, active=active),
                            can_steer=run_priority_allowed(
                                run=run, role=roles.get(run.experiment.project.team_id),
                                user=user))
        sections[run.queue].entries.append(entry)
    for section in sections.values():
        section.entries.sort(key=lambda e: e.position)
    return list(sections.values())


def run_wait(run: Run) -> str | None:
    """Why the queued `run` still waits (wait_reason), or None: also for a run not queued."""
    if run.status != RunStatus.QUEUED:
        return None
    active = _active_per_project([run.experiment.project_id])
    return wait_reason(run, capacity=queue_capacity(), active=active)


def running_runs(user) -> tuple[list[Run], int]:
    """The runs that workers run now: those of the user's teams, oldest claim first, and how
    many of other teams'."""
    holding = runs_holding_places()
    visible = holding.filter(experiment__project__team_id__in=list(_roles(user)))
    runs = list(visible.select_related("experiment__project", "launched_by")
                .order_by("started_at", "pk"))
    return runs, holding.count() - len(runs)


@dataclass
class DeviceUse:
    """One of a worker's devices, and the run that holds it: `run` where the user may see it,
    `hidden` for another team's; free when neither."""

    device: str
    run: Run | None = None
    hidden: bool = False

    @property
    def free(self) -> bool:
        return self.run is None and not self.hidden


@dataclass
class WorkerRow:
    worker: Worker
    silent: bool
    runs: list[Run]  # those of the user's teams that it runs now
    hidden_runs: int  # and of other teams'
    devices: list[DeviceUse] = field(default_factory=list)


def _device_uses(worker: Worker, runs: list[Run], team_ids: set[int]) -> list[DeviceUse]:
    holders = {str(device): run for run in runs
               for device in (run.device_ids if isinstance(run.device_ids, list) else [])}
    uses = []
    for device in worker.devices:
        run = holders.get(device)
        visible = run is not None and run.experiment.project.team_id in team_ids
        uses.append(DeviceUse(device=device, run=run if visible else None,
                              hidden=run is not None and not visible))
    return uses


def worker_rows(user, now: datetime | None = None) -> list[WorkerRow]:
    """Every worker that reported itself, with the runs it runs now and the devices each holds
    (named only where the user may see them)."""
    cutoff = silent_before(now)
    team_ids = set(_roles(user))
    workers = list(Worker.objects.all())
    runs: dict[str, list[Run]] = defaultdict(list)
    for run in (runs_holding_places().filter(worker__in=[w.name for w in workers])
                .select_related("experiment__project").order_by("started_at", "pk")):
        runs[run.worker].append(run)
    return [WorkerRow(worker=worker, silent=worker.heartbeat_at < cutoff,
                      runs=[r for r in runs[worker.name]
                            if r.experiment.project.team_id in team_ids],
                      hidden_runs=sum(r.experiment.project.team_id not in team_ids
                                      for r in runs[worker.name]),
                      devices=_device_uses(worker, runs[worker.name], team_ids))
            for worker in workers]
