from django.conf import settings
from django.db import models
from django.urls import reverse


class ExperimentKind(models.TextChoices):
    TRAINING = "training", "Training"
    EVALUATION = "evaluation", "Evaluation"
    TRACKED = "tracked", "Tracked: logged by scripts that run elsewhere"
    SCRIPT = "script", "Script: commands launched from a job template"


# The experiments whose runs take data from scripts through the tracking endpoints: a tracked
# run's script outside rlab, and a script run's process, which rlab launched.
LOGGED_BY_SCRIPTS = (ExperimentKind.TRACKED, ExperimentKind.SCRIPT)


class Experiment(models.Model):
    """A definition: what to train and how (a training.spec.config.RunConfig), or what to evaluate a
    model on and how (an evaluation: a training.spec.evaluation_config.EvalConfig without its
    model). Each
    launch makes a Run with a snapshot of `config`; an evaluation's runs are its jobs, one per
    model or checkpoint evaluated."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE,
                                related_name="experiments")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=12, choices=ExperimentKind.choices,
                            default=ExperimentKind.TRAINING, db_index=True)
    config = models.JSONField(help_text="A RunConfig, or an EvalConfig for an evaluation; "
                                        "validated on save.")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                               related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["project", "name"],
                                               name="experiment_name_unique_in_project")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("experiments:detail", args=[self.pk])

    @property
    def is_evaluation(self) -> bool:
        return self.kind == ExperimentKind.EVALUATION

    @property
    def is_tracked(self) -> bool:
        return self.kind == ExperimentKind.TRACKED

    @property
    def is_script(self) -> bool:
        return self.kind == ExperimentKind.SCRIPT

    @property
    def is_logged_by_scripts(self) -> bool:
        return self.kind in LOGGED_BY_SCRIPTS
