from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from webapp.datasets import mapping, parsing
from webapp.datasets.models import Dataset, DatasetKind
from webapp.projects.models import Project


class _DatasetNameMixin:
    project: Project
    cleaned_data: dict[str, Any]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if Dataset.objects.filter(project=self.project, name=name).exists():
            raise forms.ValidationError("This project already has a dataset with this name.")
        return name


class UploadForm(_DatasetNameMixin, forms.Form):
    """Step 1: the file and what it holds. Its columns are mapped in step 2 (MappingForm)."""

    name = forms.CharField(max_length=120)
    kind = forms.ChoiceField(choices=DatasetKind.choices, initial=DatasetKind.PROMPTS)
    # Empty files pass here, so that the parser reports them with the other file problems.
    file = forms.FileField(allow_empty_file=True)

    def __init__(self, *args: Any, project: Project, too_large: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.project = project
        self.too_large = too_large
        if too_large:  # the file was dropped at the limit: say so, not "this field is required"
            self.fields["file"].required = False
        self.fields["file"].help_text = (
            f"JSON lines (one object per line), CSV (comma-, tab- or semicolon-separated, with "
            f"a header line) or Parquet; for a text corpus also plain text (.txt), whose "
            f"paragraphs, separated by blank lines, are its passages; UTF-8 text; up to "
            f"{parsing.size_text(settings.RLAB_DATASET_MAX_BYTES)} and "
            f"{settings.RLAB_DATASET_MAX_ROWS:,} rows. Columns are mapped in the next step.")

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if self.too_large or (upload is not None
                              and upload.size > settings.RLAB_DATASET_MAX_BYTES):
            raise forms.ValidationError(
                parsing.too_large_message(settings.RLAB_DATASET_MAX_BYTES))
        return upload


class MappingForm(_DatasetNameMixin, forms.Form):
    """Step 2: which of the file's columns fills each role of the dataset's kind; the optional
    roles (a prompt dataset's difficulty and source) may be left without one."""

    name = forms.CharField(max_length=120)

    def __init__(self, *args: Any, project: Project, kind: str, columns: tuple[str, ...],
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.project = project
        self.kind = kind
        options = [(c, c) for c in columns]
        for role in parsing.ROLES[kind]:
            self.fields[role] = forms.ChoiceField(
                choices=[("", "— choose a column —"), *options],
                label=f"{role.capitalize()} column", help_text=_ROLE_HELP[role],
                error_messages={"required": "Choose a column."})
        for role in parsing.OPTIONAL_ROLES[kind]:
            self.fields[role] = forms.ChoiceField(
                choices=[("", "— none —"), *options], required=False,
                label=f"{role.capitalize()} column (optional)", help_text=_ROLE_HELP[role])

    def role_fields(self) -> list[forms.BoundField]:
        return [self[role] for role in mapping.all_roles(self.kind)]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        seen: dict[str, str] = {}
        for role in mapping.all_roles(self.kind):
            column = cleaned.get(role)
            if column and column in seen:
                self.add_error(role, f"{seen[column].capitalize()} already uses {column!r}; "
                                     f"choose a different column.")
            elif column:
                seen[column] = role
        return cleaned

    @property
    def mapping(self) -> dict[str, str]:
        """Role -> column; "" for an optional role left without one."""
        return {role: self.cleaned_data[role] for role in mapping.all_roles(self.kind)}


_ROLE_HELP = {
    "prompt": "The question or instruction given to the model.",
    "answer": "The expected final number; correct_answer compares it with the completion's "
              "last number.",
    "chosen": "The preferred reply.",
    "rejected": "The reply that is worse than the chosen one.",
    "difficulty": "A number per row, lower = easier (empty cells: unknown); the curriculum "
                  "prompt sampler trains on the easiest prompts first.",
    "source": "The distribution each row comes from (its source dataset, topic or level: text "
              "in every row); DUMP's prompt sampler learns which distributions to train on.",
    "text": "A passage of unlabelled text per row, at least 20 characters; RMT asks the model "
            "to predict its tokens.",
}
