"""The run page's live panels (status, rollouts, checkpoints, log): what their templates need.
The page renders them once; its event stream (webapp.live.stream) re-renders them as the run
goes on."""

from __future__ import annotations

from django.utils import timezone

from webapp.experiments.models import ExperimentKind
from webapp.runs import selectors
from webapp.runs.models import Run

# The status panel's throughput and memory, from the trainer's last step.
PERFORMANCE_METRICS = ["perf/tokens_per_s", "time/step_s", "perf/peak_memory_gb",
                       "perf/peak_gpu_memory_gb"]


def _headline(run: Run) -> list[str]:
    """The status panel's metrics: a training run's headline ones, an evaluation job's results."""
    if not run.is_evaluation:
        return selectors.HEADLINE_METRICS
    return [key for key in selectors.metric_keys(run)
            if key.startswith("eval/") and ("@" in key or key.endswith("/mean"))]


PANELS = ("live", "rollouts", "checkpoints", "log-lines")  # partials of live/run_live.html


def live_context(run: Run, user, *, can_edit: bool | None = None,
                 panels: tuple[str, ...] = PANELS) -> dict:
    """The context of `panels`, from the run as it is now in the database. The event stream
    asks only for the panels a batch changed: reading the checkpoint folders' sizes, say, is
    left for a batch with a new checkpoint."""
    run = Run.objects.select_related("experiment__project").get(pk=run.pk)
    can_edit = selectors.can_edit_run(run, user) if can_edit is None else can_edit
    context = {"run": run, "can_edit": can_edit}
    if "live" in panels:
        context.update(
            resume_checkpoint=run.checkpoint_to_resume() if can_edit else None,
            eta_seconds=run.eta_seconds(timezone.now()),
            latest=selectors.latest_metrics(run, _headline(run)),
            performance=selectors.latest_metrics(run, PERFORMANCE_METRICS))
    if "rollouts" in panels:
        context["rollouts"] = selectors.latest_rollouts(run)
    if "checkpoints" in panels:
        context["checkpoints"] = selectors.checkpoints_on_disk(run)
        # What a checkpoint can be evaluated with, from its row.
        context["evaluations"] = (run.experiment.project.experiments.filter(
            kind=ExperimentKind.EVALUATION).order_by("name") if can_edit else [])
    if "log-lines" in panels:
        context["log_lines"] = selectors.recent_log_lines(run)
    return context
