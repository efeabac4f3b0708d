from django.conf import settings
from django.db import models
from django.urls import reverse


class Project(models.Model):
    team = models.ForeignKey("teams.Team", on_delete=models.PROTECT, related_name="projects")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    max_concurrent_runs = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="At most this many of the project's runs start or run at once; more wait "
                  "queued. Empty: no limit.")
    chart_layout = models.JSONField(
        default=dict, blank=True,
        help_text="How the project's chart panels are arranged (pinned, order, sizes), the "
                  "same on every run, group and comparison page of the project.")

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"],
                                               name="project_name_unique_in_team")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("projects:detail", args=[self.pk])
