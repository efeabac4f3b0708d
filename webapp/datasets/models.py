from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.urls import reverse

from webapp.datasets import mapping, parsing, storage


class DatasetKind(models.TextChoices):
    PROMPTS = parsing.PROMPTS, "Prompts: a prompt and a numeric answer per row"
    PREFERENCES = parsing.PREFERENCES, "Preference pairs: a prompt, a chosen and a rejected reply"
    TEXT_CORPUS = parsing.TEXT_CORPUS, "Text corpus: unlabelled passages, for mid-training (RMT)"


class DatasetFormat(models.TextChoices):
    JSONL = parsing.JSONL, "JSON lines"
    CSV = parsing.CSV, "CSV"
    PARQUET = parsing.PARQUET, "Parquet"
    TEXT = parsing.TEXT, "Plain text"


class Dataset(models.Model):
    """An uploaded file, stored once by content, and its rows normalised to JSON lines with one
    key per role (`prompt`, `answer` and, when a column was mapped to them, `difficulty` and
    `source`; or `prompt`, `chosen`, `rejected`; or a text corpus's `text`, one passage a line)
    for the trainer."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE,
                                related_name="datasets")
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=12, choices=DatasetKind.choices)
    format = models.CharField(max_length=8, choices=DatasetFormat.choices)
    original_filename = models.CharField(max_length=255)
    size_bytes = models.PositiveBigIntegerField(help_text="Of the uploaded file.")
    row_count = models.PositiveIntegerField()
    columns = models.JSONField(help_text="The file's column names, in order.")
    column_mapping = models.JSONField(help_text="Role (prompt, answer, …) → the file's column.")
    sha256 = models.CharField(max_length=64, db_index=True,
                              help_text="Of the uploaded file; names its blob in the store.")
    normalized_sha256 = models.CharField(max_length=64, db_index=True,
                                         help_text="Of the normalised JSON lines.")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"],
                                               name="dataset_name_unique_in_project")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("datasets:detail", args=[self.pk])

    @property
    def original_path(self) -> Path:
        return storage.blob_path(self.sha256)

    @property
    def normalized_path(self) -> Path:
        return storage.blob_path(self.normalized_sha256)

    @property
    def roles(self) -> tuple[str, ...]:
        """The keys of the normalised rows: the kind's roles, and the optional ones mapped."""
        return mapping.mapped_roles(self.kind, self.column_mapping)

    @property
    def has_difficulty(self) -> bool:
        """Whether its rows carry a difficulty, which the curriculum prompt sampler needs."""
        return "difficulty" in self.column_mapping
