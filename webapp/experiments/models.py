from django.conf import settings
from django.db import models
from django.urls import reverse


class Experiment(models.Model):
    """A definition: what to train and how. Each launch makes a Run with a snapshot of `config`."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE,
                                related_name="experiments")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    config = models.JSONField(help_text="A training.config.RunConfig, validated on save.")
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
