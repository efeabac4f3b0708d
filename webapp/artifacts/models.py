from __future__ import annotations

import secrets

from django.db import models


class LoggedModelStatus(models.TextChoices):
    """MLflow's LoggedModelStatus: its files are being uploaded, all are there, or it failed."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


def logged_model_id() -> str:
    """MLflow's form of a logged model's id: m- and 32 hex digits."""
    return f"m-{secrets.token_hex(16)}"


class LoggedModel(models.Model):
    """A model a script logged (MLflow 3's logged model: mlflow.<flavor>.log_model, transformers'
    checkpoints with HF_MLFLOW_LOG_ARTIFACTS): a name, its files (Artifact rows), and the run
    that produced it."""

    id = models.CharField(primary_key=True, max_length=40, default=logged_model_id,
                          editable=False)
    experiment = models.ForeignKey("experiments.Experiment", on_delete=models.CASCADE,
                                   related_name="logged_models")
    source_run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, null=True, blank=True,
                                   related_name="logged_models")
    name = models.CharField(max_length=250)
    model_type = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=LoggedModelStatus.choices,
                              default=LoggedModelStatus.PENDING)
    params = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


# The longest artifact path kept: MLflow sets none, file systems 4,096 bytes.
ARTIFACT_PATH_MAX_LENGTH = 1000


class Artifact(models.Model):
    """One stored file, of a run or of a logged model (exactly one of the two), at a relative
    path with forward slashes (webapp.artifacts.paths checks it)."""

    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, null=True, blank=True,
                            related_name="artifacts")
    logged_model = models.ForeignKey(LoggedModel, on_delete=models.CASCADE, null=True,
                                     blank=True, related_name="artifacts")
    path = models.CharField(max_length=ARTIFACT_PATH_MAX_LENGTH)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["path"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(run__isnull=False, logged_model__isnull=True)
                | models.Q(run__isnull=True, logged_model__isnull=False),
                name="artifact_has_one_owner"),
            models.UniqueConstraint(fields=["run", "path"], condition=models.Q(run__isnull=False),
                                    name="artifact_path_unique_in_run"),
            models.UniqueConstraint(fields=["logged_model", "path"],
                                    condition=models.Q(logged_model__isnull=False),
                                    name="artifact_path_unique_in_logged_model"),
        ]

    def __str__(self) -> str:
        return self.path

    @property
    def storage_name(self) -> str:
        """Where the artifact store keeps the file."""
        if self.run_id is not None:
            return f"runs/{self.run_id}/{self.path}"
        return f"models/{self.logged_model_id}/{self.path}"
