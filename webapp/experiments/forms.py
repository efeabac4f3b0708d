"""The experiment form: name and description, plus one field per training.config.RunConfig field,
with the trainer's own defaults, bounds and help text. Validation ends in RunConfig.from_dict, the
same check the trainer applies, so a config that saves is a config that runs."""

from __future__ import annotations

import dataclasses
from typing import Any

from django import forms

from training.config import ConfigError, RunConfig
from webapp.datasets.models import DatasetKind
from webapp.datasets.selectors import datasets_for_project
from webapp.experiments.models import Experiment


def _form_field(f: dataclasses.Field) -> forms.Field:
    meta = f.metadata
    label = meta["label"] or f.name.replace("_", " ").capitalize()
    common: dict[str, Any] = {"label": label, "help_text": meta["help"], "initial": f.default}
    if meta["choices"]:
        # Short options; what each one does goes in the help text, where it is read in full.
        choices = [(value, value) for value in meta["choices"]]
        explained = "; ".join(f"{value}: {text}" for value, text in meta["choices"].items())
        common["help_text"] = f"{meta['help']} {explained}."
        return forms.ChoiceField(choices=choices, **common)
    if isinstance(f.default, bool):
        return forms.BooleanField(required=False, **common)
    if isinstance(f.default, int):
        return forms.IntegerField(min_value=meta["min"], max_value=meta["max"], **common)
    if isinstance(f.default, float):
        widget = forms.NumberInput(attrs={"step": "any"})
        return forms.FloatField(min_value=meta["min"], max_value=meta["max"], widget=widget,
                                **common)
    return forms.CharField(max_length=500, required=not meta["blank"], **common)


def _dataset_field(project) -> forms.ChoiceField:
    """The project's datasets, by id: prompt datasets for the online methods, preference ones
    for DPO. The id is what the experiment stores; a launch resolves it to the dataset's file
    (runs.services.run_launch), so a config saved here can name no file outside the project's
    datasets."""
    datasets = list(datasets_for_project(project))
    groups = [(label, [(str(d.pk), f"{d.name} ({d.row_count} rows)")
                       for d in datasets if d.kind == kind])
              for kind, label in ((DatasetKind.PROMPTS, "Prompt datasets"),
                                  (DatasetKind.PREFERENCES, "Preference datasets (DPO)"))]
    choices = [("", "None: train on the built-in task"), *(g for g in groups if g[1])]
    return forms.ChoiceField(
        choices=choices, required=False, initial="", label="Dataset",
        help_text="One of this project's datasets: a prompt dataset is trained on instead of "
                  "the task; DPO needs a preference dataset. Each run records the file it used.")


class ExperimentForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args: Any, project, instance: Experiment | None = None, **kwargs: Any):
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {"name": instance.name, "description": instance.description,
                                 **instance.config}
        super().__init__(*args, **kwargs)
        self.project = project
        self.instance = instance
        for f in RunConfig.fields():
            self.fields[f.name] = _form_field(f)
        self.fields["dataset"] = _dataset_field(project)

    def main_fields(self) -> list[forms.BoundField]:
        return [self[f.name] for f in RunConfig.fields() if not f.metadata["advanced"]]

    def advanced_fields(self) -> list[forms.BoundField]:
        return [self[f.name] for f in RunConfig.fields() if f.metadata["advanced"]]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        others = Experiment.objects.filter(project=self.project, name=name)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError("This project already has an experiment with that name.")
        return name

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        names = [f.name for f in RunConfig.fields()]
        if any(name in self.errors for name in names):
            return cleaned
        try:
            self.config = RunConfig.from_dict({name: cleaned[name] for name in names}).to_dict()
        except ConfigError as exc:
            for name, message in exc.errors.items():
                self.add_error(name if name in self.fields else None, message)
            return cleaned
        self._check_dataset_kind(cleaned)
        return cleaned

    def _check_dataset_kind(self, cleaned: dict[str, Any]) -> None:
        """The dataset must suit the algorithm (preference pairs for DPO, prompts otherwise),
        and a curriculum needs a difficulty column."""
        if not cleaned["dataset"]:
            return
        dataset = datasets_for_project(self.project).get(pk=int(cleaned["dataset"]))
        if cleaned["algorithm"] == "dpo" and dataset.kind != DatasetKind.PREFERENCES:
            self.add_error("dataset", "DPO trains on preference pairs: choose a preference "
                                      "dataset.")
        elif cleaned["algorithm"] != "dpo" and dataset.kind != DatasetKind.PROMPTS:
            self.add_error("dataset", "This is a preference dataset, for DPO: choose a prompt "
                                      "dataset, or the DPO algorithm.")
        elif cleaned["prompt_sampler"] == "curriculum" and not dataset.has_difficulty:
            self.add_error("prompt_sampler", "A curriculum orders prompts by difficulty, and "
                                             "this dataset has no difficulty column.")
