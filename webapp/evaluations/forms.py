"""The form that launches an evaluation job: which checkpoint or model an evaluation recipe
runs on."""

from __future__ import annotations

import os
from typing import Any

from django import forms

from webapp.experiments.forms import MODEL_CHOICES_ID
from webapp.runs.model_sources import model_choices
from webapp.runs.models import Checkpoint


class EvaluateForm(forms.Form):
    """What an evaluation job evaluates: one of the project's checkpoints still on disk, or a
    model by name."""

    checkpoint = forms.ChoiceField(
        required=False, label="Checkpoint",
        help_text="A checkpoint of any run in this project whose folder is still on disk.")
    model = forms.CharField(
        required=False, max_length=500, label="or a model",
        widget=forms.TextInput(attrs={"list": MODEL_CHOICES_ID}),
        help_text="A built-in model (builtin:smollm2-135m-instruct), a model an administrator "
                  "registered (local:<name>), or a hub id (needs internet on the worker).")

    def __init__(self, *args: Any, project, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.model_choices = [choice for choice in model_choices(project_id=project.pk)
                              if not choice[0].startswith("checkpoint:")]
        self.checkpoints = {
            str(c.pk): c for c in Checkpoint.objects.filter(run__experiment__project=project)
            .select_related("run__experiment").order_by("-run__created_at", "-step")
            if os.path.isdir(c.path)}
        self.fields["checkpoint"].choices = [
            ("", "—"), *((pk, f"{c.run} · step {c.step}{' (final)' if c.final else ''}")
                         for pk, c in self.checkpoints.items())]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        chosen = cleaned.get("checkpoint")
        cleaned["checkpoint"] = self.checkpoints.get(chosen) if chosen else None
        cleaned["model"] = (cleaned.get("model") or "").strip()
        if cleaned["checkpoint"] is None and not cleaned["model"]:
            raise forms.ValidationError("Choose a checkpoint, or give a model to evaluate.")
        if cleaned["checkpoint"] is not None and cleaned["model"]:
            raise forms.ValidationError("Choose a checkpoint or give a model, not both.")
        return cleaned
