"""The run page's live panels (status, rollouts, checkpoints, log): what their templates need.
The page renders them once; its event stream (webapp.runs.stream) re-renders them as the run
goes on."""

from __future__ import annotations

from django.utils import timezone

from webapp.runs import selectors
from webapp.runs.models import Run
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role


# The status panel's throughput and memory, from the trainer's last step.
PERFORMANCE_METRICS = ["perf/tokens_per_s", "time/step_s", "perf/peak_memory_gb",
                       "perf/peak_gpu_memory_gb"]


def can_edit_run(run: Run, user) -> bool:
    return user_has_role(user, run.experiment.project.team_id, Role.MEMBER)


def live_context(run: Run, user, *, can_edit: bool | None = None) -> dict:
    """The panels' context, from the run as it is now in the database."""
    run = Run.objects.select_related("experiment__project").get(pk=run.pk)
    can_edit = can_edit_run(run, user) if can_edit is None else can_edit
    return {
        "run": run,
        "can_edit": can_edit,
        "resume_checkpoint": run.checkpoint_to_resume() if can_edit else None,
        "eta_seconds": run.eta_seconds(timezone.now()),
        "latest": selectors.latest_metrics(run, selectors.HEADLINE_METRICS),
        "performance": selectors.latest_metrics(run, PERFORMANCE_METRICS),
        "rollouts": selectors.latest_rollouts(run),
        "log_lines": selectors.recent_log_lines(run),
        "checkpoints": selectors.checkpoints_on_disk(run),
    }
