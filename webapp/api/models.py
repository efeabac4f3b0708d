from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A personal access token for the API, the SDK, the CLI and MLflow clients. Only its
    SHA-256 is stored: the token itself is shown once, when it is created (webapp.api.tokens).
    It acts as its user, with the user's roles in each team."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What it is for, e.g. 'cluster A'.")
    prefix = models.CharField(max_length=16, unique=True,
                              help_text="The token's public first part: finds it, and names it "
                                        "in lists without revealing it.")
    digest = models.CharField(max_length=64, help_text="SHA-256 of the whole token, hex.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    run = models.ForeignKey(
        "runs.Run", on_delete=models.CASCADE, null=True, blank=True, related_name="run_tokens",
        help_text="A run's own token, given to its script run's process: it reaches only that "
                  "run, and only until the run ends (webapp.api.run_tokens).")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (rlab_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
