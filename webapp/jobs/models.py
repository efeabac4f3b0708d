from django.conf import settings
from django.db import models


class RolloutFormat(models.TextChoices):
    NONE = "", "None"
    TRL = "trl", "TRL: completions/*.parquet"
    VERL = "verl", "veRL: rollout_data_dir/*.jsonl"


class JobTemplate(models.Model):
    """A command a team's members may launch as a run, written by one of its admins: its argument
    list with `{name}` placeholders for typed, bounded parameters (webapp.jobs.parameters),
    where it runs and what it needs, and where its trainer writes rollouts and checkpoints.
    Launching renders it once into the run's config (webapp.jobs.script_spec.ScriptSpec), so a
    later edit never changes a run already launched."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="job_templates")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, max_length=5000)
    command = models.TextField(
        max_length=10_000,
        help_text="The command line, split as a POSIX shell would but never run by one: "
                  "`accelerate launch --num_processes {procs} train.py --lr {lr}`. A value fills "
                  "one argument and cannot add another.")
    parameters = models.JSONField(
        default=list, blank=True,
        help_text="Its parameters: [{name, type, default, min, max, choices, help}].")
    working_dir = models.CharField(
        max_length=1000, blank=True,
        help_text="An absolute folder on the worker to run in; empty: the run's own folder.")
    environment = models.JSONField(default=dict, blank=True,
                                   help_text="Environment variables, name to value.")
    queue = models.CharField(max_length=20, default="cpu",
                             help_text="The Celery queue whose workers run it.")
    devices = models.CharField(
        max_length=60, default="1",
        help_text="How many devices (GPUs, or CPU process slots) it needs on one worker: a "
                  "number, or a parameter's {name}.")
    rollouts_format = models.CharField(max_length=8, blank=True, choices=RolloutFormat.choices)
    rollouts_path = models.CharField(
        max_length=500, blank=True,
        help_text="Where the trainer writes rollout files, relative to the run's folder "
                  "(TRL: completions; veRL: the rollout_data_dir you pass it).")
    checkpoints_path = models.CharField(
        max_length=500, blank=True,
        help_text="Where the trainer writes checkpoint folders in Hugging Face format, relative "
                  "to the run's folder ('.' for TRL's output_dir); empty: none are tracked.")
    resume_arguments = models.TextField(
        max_length=2000, blank=True,
        help_text="Arguments added when a run is resumed, with {checkpoint} for its newest "
                  "checkpoint's folder: `--resume_from_checkpoint {checkpoint}`. Empty: its runs "
                  "cannot be resumed.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"],
                                               name="job_template_name_unique_in_team")]

    def __str__(self) -> str:
        return self.name


class OutputKind(models.TextChoices):
    ROLLOUTS = "rollouts", "Rollout file"
    CHECKPOINT = "checkpoint", "Checkpoint folder"


class ScriptOutput(models.Model):
    """A file or folder a script run's trainer wrote that the worker took in (imported rollouts,
    a checkpoint recorded), or gave up on: each is taken once, even by a worker that restarts."""

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="script_outputs")
    kind = models.CharField(max_length=12, choices=OutputKind.choices)
    path = models.CharField(max_length=1000, help_text="Relative to the run's folder.")
    size = models.BigIntegerField(default=0)
    taken_at = models.DateTimeField(auto_now_add=True)
    problem = models.TextField(blank=True, help_text="Why it could not be taken in, if so.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "kind", "path"],
                                               name="script_output_once_per_run")]
