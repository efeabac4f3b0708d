from django.conf import settings
from django.db import models


class ColumnSet(models.Model):
    """The columns one user shows in one project's runs table."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="+")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE,
                                related_name="+")
    columns = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "project"],
                                               name="column_set_once_per_user_project")]
