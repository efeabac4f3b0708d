from __future__ import annotations

import os
from datetime import datetime

from django.conf import settings
from django.db import models
from django.urls import reverse


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Its worker shut down (Ctrl-C, SIGTERM: a restart, a deploy) or was killed while it ran;
    # nothing was wrong with the run itself.
    INTERRUPTED = "interrupted"
    # A tracked run whose script stopped reporting (killed, its machine lost) without ending it;
    # it runs again when the script, or another resuming it, reports.
    CRASHED = "crashed"


TERMINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED,
                               RunStatus.INTERRUPTED, RunStatus.CRASHED})
# A run that ended before its last step; a new run can continue it from a checkpoint.
RESUMABLE_STATUSES = frozenset({RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED})

# The one place that says which status may follow which for a run that rlab launched;
# services.run_transition enforces it with a conditional UPDATE, so two workers can never both
# move a run out of the same state.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    RunStatus.QUEUED: frozenset({RunStatus.STARTING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.STARTING: frozenset({RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED,
                                   RunStatus.CANCELLED, RunStatus.INTERRUPTED}),
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED,
                                  RunStatus.INTERRUPTED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.INTERRUPTED: frozenset(),
    RunStatus.CRASHED: frozenset(),
}

# The same for a tracked run, which its script (or the stale-run check) moves: it ends as the
# script says, crashes when the script goes silent, and any end is re-opened by a script
# resuming it (MLflow's start_run(run_id=...), rlab.init(resume_run_id=...)). A crashed run's
# script may also still end it, once it reaches the server again.
TRACKED_TRANSITIONS: dict[str, frozenset[str]] = {
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED,
                                  RunStatus.CRASHED}),
    RunStatus.CRASHED: frozenset({RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED,
                                  RunStatus.CANCELLED}),
    **{status: frozenset({RunStatus.RUNNING})
       for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)},
}


class Run(models.Model):
    """One execution of an experiment, with the config it ran with."""

    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE,
                                   related_name="runs")
    number = models.PositiveIntegerField(help_text="1, 2, 3... within the experiment.")
    config = models.JSONField(help_text="Snapshot of the experiment config at launch.")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED,
                              db_index=True)
    launched_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                    related_name="+")
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker claimed it.")
    worker = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the broker last accepted the run's message; none while it never has "
                  "(the broker was down at launch): housekeeping sends it again.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    running_since = models.DateTimeField(
        null=True, blank=True, help_text="When the first step began; the ETA counts from here.")
    error_message = models.TextField(blank=True)
    notes = models.TextField(blank=True, max_length=20_000,
                             help_text="The team's notes on this run: findings, caveats.")
    resumed_from = models.ForeignKey(
        "Checkpoint", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="resumed_runs", help_text="The checkpoint of an earlier run it continues.")
    name = models.CharField(max_length=250, blank=True,
                            help_text="A tracked run's own name, as its script gave it.")
    tracked_tags = models.JSONField(
        default=dict, blank=True, help_text="A tracked run's tags, as its script set them (the "
                                            "team's own tags are reviews.RunTag).")
    client_key = models.CharField(
        max_length=64, blank=True,
        help_text="The key a tracked run's script created it with: the same request sent again "
                  "(a retry whose answer was lost) returns this run instead of a second one.")
    evaluated_checkpoint = models.ForeignKey(
        "Checkpoint", on_delete=models.SET_NULL, null=True, blank=True,
        related_name="evaluations",
        help_text="For an evaluation job: the checkpoint it evaluates (none: a base model).")
    queue = models.CharField(max_length=20, blank=True,
                             help_text="The Celery queue it waits on (cpu or gpu); none for a "
                                       "tracked run.")
    priority = models.SmallIntegerField(
        default=0, help_text="Higher runs first among the queued runs of a queue; ties by age.")
    seed_group = models.CharField(
        max_length=32, blank=True, db_index=True,
        help_text="A hash of the config less its seed (webapp.runs.seed_groups): runs that "
                  "differ only by seed share it.")
    sweep = models.ForeignKey("sweeps.Sweep", on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="runs", help_text="The sweep that launched it.")
    sweep_trial = models.PositiveIntegerField(
        null=True, blank=True, help_text="Its trial's number in the sweep's Optuna study.")
    job_template = models.ForeignKey(
        "jobs.JobTemplate", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs",
        help_text="For a script run: the template it was launched from (its config keeps the "
                  "command as rendered then).")
    devices = models.PositiveSmallIntegerField(
        default=1, help_text="Devices it needs on one worker (GPUs, or CPU process slots); more "
                             "than one runs the built-in trainer data-parallel under torchrun.")
    device_ids = models.JSONField(
        default=list, blank=True,
        help_text="The worker's devices it was given when claimed; the process sees only these.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The queue: a queue's next run to claim, highest priority first, then oldest.
            models.Index(fields=["status", "queue", "-priority", "created_at"],
                         name="run_queue_order"),
            # The runs table's default order, newest first, and its page cursor.
            models.Index(fields=["created_at", "id"], name="run_created_order"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "number"],
                                    name="run_number_unique_in_experiment"),
            models.UniqueConstraint(fields=["experiment", "client_key"],
                                    condition=~models.Q(client_key=""),
                                    name="run_client_key_unique_in_experiment"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.name} #{self.number}"

    @property
    def is_evaluation(self) -> bool:
        return self.experiment.is_evaluation

    @property
    def is_tracked(self) -> bool:
        """Logged by a script elsewhere (the SDK, an MLflow client), not run by a worker."""
        return self.experiment.is_tracked

    @property
    def is_script(self) -> bool:
        """A job template's command, run by a worker: the worker reports its status (the
        process's exit code), and the process logs its data as a tracked run's script does."""
        return self.experiment.is_script

    def get_absolute_url(self) -> str:
        return reverse("runs:detail", args=[self.pk])

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_cancellable(self) -> bool:
        return not self.is_terminal

    @property
    def devices_needed(self) -> int:
        """The worker's devices a claim gives it: at least one, so that no run's process sees
        every device of its worker."""
        return max(self.devices, 1)

    def checkpoint_to_resume(self) -> Checkpoint | None:
        """The newest checkpoint before the last step whose folder is still there, for a run that
        failed, was cancelled or was interrupted; None when the run cannot be resumed."""
        if self.status not in RESUMABLE_STATUSES:
            return None
        if self.is_evaluation or self.is_tracked:
            return None  # an evaluation is run again instead; a tracked run resumes elsewhere
        # A script run's trainer has no max_steps that rlab knows: any checkpoint will do.
        max_steps = self.config.get("max_steps")
        before_last = (self.checkpoints.all() if max_steps is None
                       else self.checkpoints.filter(step__lt=max_steps))
        return next((c for c in before_last.order_by("-step") if os.path.isdir(c.path)), None)

    @property
    def is_waiting_for_broker(self) -> bool:
        """Queued, and the broker has not accepted it yet: it was down at launch."""
        return self.status == RunStatus.QUEUED and self.enqueued_at is None

    @property
    def progress_fraction(self) -> float:
        if not self.progress_total:
            return 0.0
        return min(1.0, self.progress_step / self.progress_total)

    @property
    def duration_seconds(self) -> float | None:
        """Wall time from the claim by a worker to the end, for a finished run."""
        if not (self.started_at and self.finished_at):
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def eta_seconds(self, now: datetime) -> float | None:
        """Remaining time at the mean pace of the steps done so far; None before the first step."""
        if self.is_terminal or not self.running_since or not self.progress_step:
            return None
        elapsed = (now - self.running_since).total_seconds()
        per_step = elapsed / self.progress_step
        return max(0.0, per_step * (self.progress_total - self.progress_step))


# MLflow allows metric keys of up to 250 characters.
METRIC_KEY_MAX_LENGTH = 250


class MetricPoint(models.Model):
    # No index of its own: the unique (run, key, step) index serves every lookup by run, and one
    # index less is a faster insert of each of the many points a run logs.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_points",
                            db_index=False)
    key = models.CharField(max_length=METRIC_KEY_MAX_LENGTH)
    step = models.BigIntegerField()
    value = models.FloatField()
    wall_time = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key", "step"],
                                               name="metric_point_unique_per_step")]


class MetricSummary(models.Model):
    """One metric of one run in a few numbers, kept by webapp.runs.ingestion as points arrive,
    so that tables over many runs sort and filter by a metric without reading its points."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_summaries",
                            db_index=False)
    key = models.CharField(max_length=METRIC_KEY_MAX_LENGTH)
    last_step = models.BigIntegerField()
    last_value = models.FloatField(null=True)
    min_value = models.FloatField(null=True)
    max_value = models.FloatField(null=True)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"],
                                               name="metric_summary_unique_per_key")]
        # The runs table sorts and filters a project's runs by a metric's last value.
        indexes = [models.Index(fields=["key", "last_value"], name="metric_summary_key_last")]


class MetricRollup(models.Model):
    """The lowest and the highest finite point of one metric in one bucket of 2**shift steps
    (steps bucket·2**shift to (bucket+1)·2**shift − 1), kept by webapp.runs.ingestion as points
    arrive, at the widths of webapp.runs.metric_rollups.SHIFTS. A chart of a long run reads
    these instead of every point (webapp.runs.metric_series). Wall times are Unix seconds, to
    the millisecond."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_rollups",
                            db_index=False)
    key = models.CharField(max_length=METRIC_KEY_MAX_LENGTH)
    shift = models.PositiveSmallIntegerField()
    bucket = models.BigIntegerField()
    low_step = models.BigIntegerField()
    low_value = models.FloatField()
    low_time = models.FloatField()
    high_step = models.BigIntegerField()
    high_value = models.FloatField()
    high_time = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key", "shift", "bucket"],
                                               name="metric_rollup_unique_per_bucket")]


class DatasetInput(models.Model):
    """A dataset a tracked run's script logged as its input (MLflow's log_input): a reference
    to the data, not the data. Its own table, as a schema or profile may be long."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="dataset_inputs")
    name = models.CharField(max_length=500)
    digest = models.CharField(max_length=36, help_text="A hash of the data, as the script gave "
                                                       "it: the same name and digest, the same "
                                                       "data.")
    source_type = models.CharField(max_length=100, help_text="local, http, s3, hugging_face…")
    source = models.TextField(help_text="Where the data is, as JSON (a path, a URI, a repo).")
    schema = models.TextField(blank=True, help_text="Its columns, as JSON.")
    profile = models.TextField(blank=True, help_text="Its size and such, as JSON.")
    tags = models.JSONField(default=dict, blank=True,
                            help_text="mlflow.data.context (training, evaluation…) and others.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        # As in MLflow, a dataset logged to a run again is the input it already has.
        constraints = [models.UniqueConstraint(fields=["run", "name", "digest"],
                                               name="dataset_input_unique_per_run")]

    @property
    def context(self) -> str:
        return self.tags.get("mlflow.data.context", "")


class Negated(models.Func):
    """-x. An index on (k, -step, group) has every column ascending, so an order that is
    descending in some columns and ascending in others is one index scan, and a page cursor is
    one SQL row comparison that seeks straight to its place (see rollouts/rollout_browser.py)."""

    template = "(-%(expressions)s)"
    arity = 1


# The columns the rollout browser's filters and its group test read: with them in its indexes, a
# walk along an order that skips many rows reads the index alone, never the table's wide rows.
BROWSE_COLUMNS = ("step", "sample_index", "reward", "truncated", "group_degenerate")


def _browse_index(name: str, key: str | None = None, descending: bool = True,
                  **options) -> models.Index:
    """An index of one of the rollout browser's orders: the sort key (none: by step), then
    newest step, then group; covering BROWSE_COLUMNS and the key."""
    first = [] if key is None else [Negated(key) if descending else models.F(key)]
    include = [c for c in (*BROWSE_COLUMNS, key) if c and not (c == key and not descending)]
    return models.Index(models.F("run"), *first, Negated("step"), models.F("group"),
                        include=list(dict.fromkeys(include)), name=name, **options)


class Rollout(models.Model):
    """One completion: its prompt, rewards and advantage at a training step."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="rollouts")
    step = models.BigIntegerField()
    group = models.PositiveIntegerField(help_text="Index of the prompt group within the step.")
    sample_index = models.PositiveIntegerField(help_text="Index of the completion in its group.")
    prompt_id = models.CharField(max_length=200, blank=True)
    prompt = models.TextField()
    completion = models.TextField()
    reward = models.FloatField()
    rewards = models.JSONField(default=dict, help_text="Reward per reward function.")
    advantage = models.FloatField(null=True)
    completion_tokens = models.PositiveIntegerField(null=True)
    truncated = models.BooleanField(default=False)
    extra = models.JSONField(default=dict, blank=True)
    token_data = models.JSONField(
        null=True, blank=True,
        help_text="Per-token arrays for a sample of rollouts: text, logprob, entropy, kl.")
    group_degenerate = models.BooleanField(
        null=True, help_text="Every reward of its group at this step was equal, so the group gave "
                             "GRPO no learning signal; None when not known.")

    class Meta:
        ordering = ["-step", "group", "sample_index"]
        constraints = [models.UniqueConstraint(fields=["run", "step", "group", "sample_index"],
                                               name="rollout_unique_per_sample")]
        # The browser's orders (rollouts/rollout_browser.py) and the prompt history. Text search has
        # trigram indexes too, on Postgres only: migration 0006 creates them.
        indexes = [
            models.Index(fields=["run", "-step"], name="rollout_run_step"),
            _browse_index("rollout_newest_group"),
            *[_browse_index(f"rollout_{label}_{'desc' if descending else 'asc'}", key, descending)
              for key, label in (("reward", "reward"), ("advantage", "advantage"),
                                 ("completion_tokens", "length"))
              for descending in (True, False)],
            # Truncated completions and degenerate groups are often few, and bunched in some
            # stretch of training: these list them newest first without reading the others.
            _browse_index("rollout_truncated", condition=models.Q(truncated=True)),
            _browse_index("rollout_degenerate", condition=models.Q(group_degenerate=True)),
            models.Index(fields=["run", "prompt_id", "step"], name="rollout_prompt_history"),
        ]


class LogLine(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="log_lines")
    time = models.DateTimeField()
    level = models.CharField(max_length=10, default="info")
    source = models.CharField(max_length=10, default="trainer",
                              help_text="'trainer' for events, 'stderr' for raw output, 'worker'.")
    message = models.TextField()

    class Meta:
        ordering = ["time", "id"]
        indexes = [models.Index(fields=["run", "time"], name="logline_run_time")]


class Checkpoint(models.Model):
    """A checkpoint the trainer saved: a Hugging Face model folder, with the optimiser, sampler,
    RNG state and step needed to resume. The trainer deletes all but the newest few; the row stays
    so the run keeps its history, and the page tells which folders are still there."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.BigIntegerField()
    path = models.TextField(help_text="The folder on the worker's machine.")
    final = models.BooleanField(default=False, help_text="Saved at the end of the run.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-step"]
        constraints = [models.UniqueConstraint(fields=["run", "step"],
                                               name="checkpoint_unique_per_step")]

    def __str__(self) -> str:
        return f"{self.run} checkpoint at step {self.step}"

    def size_on_disk(self) -> int | None:
        """Bytes in the folder, or None when the folder is gone (or not visible from here)."""
        if not os.path.isdir(self.path):
            return None
        total = 0
        for folder, _, files in os.walk(self.path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except FileNotFoundError:
                    pass  # deleted while we looked
        return total
