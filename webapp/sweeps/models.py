from django.conf import settings
from django.db import models
from django.urls import reverse


class SweepMethod(models.TextChoices):
    GRID = "grid", "Grid: every combination of the listed values"
    RANDOM = "random", "Random"
    TPE = "tpe", "Optuna's TPE"


class SweepStatus(models.TextChoices):
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class Sweep(models.Model):
    """A base experiment's config launched over search axes; its runs are Run.sweep."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE,
                                related_name="sweeps")
    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE,
                                   related_name="sweeps", help_text="The base experiment.")
    name = models.CharField(max_length=120)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    method = models.CharField(max_length=8, choices=SweepMethod.choices)
    axes = models.JSONField(help_text="The search axes, validated against the settings.")
    seeds = models.JSONField(default=list, blank=True, help_text="Each trial runs once per seed.")
    budget = models.PositiveIntegerField(help_text="The most runs it launches.")
    max_concurrent = models.PositiveIntegerField(help_text="The most of its runs at once.")
    objective = models.CharField(max_length=250, help_text="The metric it optimises.")
    direction = models.CharField(max_length=8, choices=[("maximize", "maximize"),
                                                        ("minimize", "minimize")])
    pruner = models.BooleanField(default=False, help_text="Stop poor runs early (median).")
    pruner_startup_trials = models.PositiveIntegerField(
        default=5, help_text="The median pruner stops nothing until this many trials finished.")
    pruner_warmup_steps = models.PositiveIntegerField(
        default=0, help_text="The median pruner stops no run before this step.")
    base_config = models.JSONField(
        default=dict, help_text="The base experiment's config when the sweep was created (flat, "
                                "as RunConfig.to_dict has it): every trial starts from it, so "
                                "editing the experiment later changes no trial of the sweep.")
    status = models.CharField(max_length=10, choices=SweepStatus.choices,
                              default=SweepStatus.RUNNING)
    study_name = models.CharField(max_length=200, unique=True)
    notice = models.TextField(blank=True, help_text="What the sweep page should say: a metric "
                                                    "the pruner never saw, for one.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["project", "name"],
                                               name="sweep_name_unique_in_project")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("sweeps:detail", args=[self.pk])

    @property
    def runs_per_trial(self) -> int:
        """Each trial runs once per seed (once when no seeds are given)."""
        return len(self.seeds) or 1

    @property
    def trials_planned(self) -> int:
        """The trials the sweep runs at most: its grid's combinations, or its budget's worth."""
        if self.method == SweepMethod.GRID:
            return len(self.grid_points())
        return self.budget // self.runs_per_trial

    def grid_points(self) -> list[dict]:
        """A grid's combinations of listed values, the first axis changing slowest."""
        points: list[dict] = [{}]
        for name, axis in self.axes.items():
            points = [{**point, name: value} for point in points for value in axis["values"]]
        return points
