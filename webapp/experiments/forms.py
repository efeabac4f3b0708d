"""The experiment form: name and description, plus one field per setting of
training.spec.config.RunConfig and of every algorithm's own settings (an evaluation's: per
training.spec.evaluation_config.EvalConfig field but its model), with the trainer's own
defaults, bounds and help text, grouped by section. Only the chosen algorithm's own settings
take part; validation ends in the config's from_dict, the same check the trainer applies, so a
config that saves is a config that runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django import forms

from training.spec.algorithms import ALGORITHMS, algorithm_spec, all_specs
from training.spec.config import ConfigError, RunConfig
from training.spec.evaluation_config import EvalConfig
from training.spec.settings import SECTIONS
from webapp.datasets.models import DatasetKind
from webapp.datasets.selectors import datasets_for_project
from webapp.experiments.models import Experiment, ExperimentKind
from webapp.experiments.services import experiment_config

# The <datalist> of models a run can load (templates/_model_choices.html, which the page shows
# with runs' {% model_choices %} tag), offered by the fields that name a model.
MODEL_CHOICES_ID = "model-choices"


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


def _evaluation_dataset_field(project) -> forms.ChoiceField:
    """The project's prompt datasets, by id, for an evaluation."""
    choices = [("", "None: the built-in task"),
               *((str(d.pk), f"{d.name} ({d.row_count} rows)")
                 for d in datasets_for_project(project) if d.kind == DatasetKind.PROMPTS)]
    return forms.ChoiceField(
        choices=choices, required=False, initial="", label="Dataset",
        help_text="One of this project's prompt datasets to evaluate on instead of the task "
                  "(a test set: all its rows, with split 'auto'). Each job records the file.")


def _dataset_field(project) -> forms.ChoiceField:
    """The project's datasets, by id: prompt datasets for the online methods, preference ones
    for DPO, text corpora for RMT. The id is what the experiment stores; a launch resolves it to
    the dataset's file (runs.services.run_launch), so a config saved here can name no file
    outside the project's datasets."""
    datasets = list(datasets_for_project(project))
    groups = [(label, [(str(d.pk), f"{d.name} ({d.row_count} rows)")
                       for d in datasets if d.kind == kind])
              for kind, label in ((DatasetKind.PROMPTS, "Prompt datasets"),
                                  (DatasetKind.PREFERENCES, "Preference datasets (DPO)"),
                                  (DatasetKind.TEXT_CORPUS, "Text corpora (RMT)"))]
    choices = [("", "None: train on the built-in task"), *(g for g in groups if g[1])]
    return forms.ChoiceField(
        choices=choices, required=False, initial="", label="Dataset",
        help_text="One of this project's datasets: a prompt dataset is trained on instead of "
                  "the task; DPO needs a preference dataset, RMT a text corpus. Each run "
                  "records the file it used.")


# What a dataset of each kind other than prompts is for, and the algorithm that trains on it.
_KIND_USE = {DatasetKind.PREFERENCES: ("a preference dataset, for DPO (offline algorithms)",
                                       "DPO"),
             DatasetKind.TEXT_CORPUS: ("a text corpus, for mid-training", "RMT")}
# What an algorithm that trains on a kind other than prompts asks for.
_KIND_NEEDED = {DatasetKind.PREFERENCES: "trains on preference pairs: choose a preference "
                                         "dataset",
                DatasetKind.TEXT_CORPUS: "trains on unlabelled text: choose a text corpus"}


@dataclass
class Section:
    """A section of the form: its settings, the folded-away ones apart."""

    key: str
    title: str
    main: list[forms.BoundField]
    advanced: list[forms.BoundField]

    @property
    def has_errors(self) -> bool:
        return any(field.errors for field in self.advanced)


@dataclass
class AlgorithmSettings:
    """One algorithm's own settings in the form."""

    name: str
    description: str
    fields: list[forms.BoundField]


class ExperimentForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args: Any, project, instance: Experiment | None = None,
                 kind: str = ExperimentKind.TRAINING, algorithm: str | None = None,
                 switch_url: str = "", **kwargs: Any):
        """`algorithm` (a query parameter) chooses the algorithm of an unbound form, whose own
        settings it shows; `switch_url` is where the algorithm menu asks for another's."""
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {"name": instance.name, "description": instance.description,
                                 **instance.config}
        super().__init__(*args, **kwargs)
        self.project = project
        self.instance = instance
        self.kind = instance.kind if instance is not None else kind
        evaluation = self.kind == ExperimentKind.EVALUATION
        # An evaluation's model is chosen for each job, not in its definition.
        self.settings = [f for f in (EvalConfig if evaluation else RunConfig).fields()
                         if not (evaluation and f.name == "model")]
        self.algorithm = None if evaluation else self._chosen_algorithm(algorithm)
        # Every algorithm's own settings, by algorithm; only the chosen one's are validated.
        self.algorithm_settings: dict[str, list[dataclasses.Field]] = {}
        if not evaluation:
            for spec in all_specs():
                if self.is_bound and spec.name != self.algorithm:
                    continue  # submitted without JavaScript: the other algorithms' are ignored
                self.algorithm_settings[spec.name] = list(spec.settings.fields())
        own = [f for fs in self.algorithm_settings.values() for f in fs]
        for f in [*self.settings, *own]:
            self.fields[f.name] = _form_field(f)
            if f.metadata["models"] in ("one", "checkpoint"):
                self.fields[f.name].widget.attrs["list"] = MODEL_CHOICES_ID
        for f in own:
            # A browser sends them (swapped in, or all of them without JavaScript); a client
            # that leaves them out gets the algorithm's defaults, as a config file would.
            self.fields[f.name].required = False
        if self.algorithm is not None:
            self.fields["algorithm"].initial = self.algorithm
            if switch_url:
                # The chosen algorithm's own settings replace the last one's (htmx).
                self.fields["algorithm"].widget.attrs.update({
                    "hx-get": switch_url, "hx-trigger": "change",
                    "hx-target": "#algorithm-settings", "hx-swap": "outerHTML"})
        self.fields["dataset"] = (_evaluation_dataset_field if evaluation
                                  else _dataset_field)(project)

    def _chosen_algorithm(self, asked: str | None) -> str:
        """The submitted algorithm, else the one asked for, the instance's, or the default."""
        for candidate in (self.data.get("algorithm") if self.is_bound else None, asked,
                          self.initial.get("algorithm")):
            if candidate in ALGORITHMS:
                return candidate
        return RunConfig.algorithm

    @property
    def is_evaluation(self) -> bool:
        return self.kind == ExperimentKind.EVALUATION

    def sections(self) -> list[Section]:
        """The settings section by section, in SECTIONS order (the chosen algorithm's own are
        apart: `chosen_algorithm_settings`)."""
        sections = []
        for key, title in SECTIONS.items():
            fields = [f for f in self.settings if f.metadata["section"] == key]
            if fields or key == "algorithm" and self.algorithm is not None:
                sections.append(Section(
                    key, title, main=[self[f.name] for f in fields if not f.metadata["advanced"]],
                    advanced=[self[f.name] for f in fields if f.metadata["advanced"]]))
        return sections

    def chosen_algorithm_settings(self) -> AlgorithmSettings | None:
        return self._algorithm_settings(self.algorithm) if self.algorithm else None

    def other_algorithm_settings(self) -> list[AlgorithmSettings]:
        """The other algorithms' own settings, for a browser without JavaScript."""
        return [self._algorithm_settings(name) for name in self.algorithm_settings
                if name != self.algorithm]

    def _algorithm_settings(self, name: str) -> AlgorithmSettings:
        return AlgorithmSettings(name, algorithm_spec(name).description,
                                 [self[f.name] for f in self.algorithm_settings[name]])

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        others = Experiment.objects.filter(project=self.project, name=name)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError("This project already has an experiment or evaluation "
                                        "with that name.")
        return name

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        names = [f.name for f in self.settings] + [
            f.name for f in self.algorithm_settings.get(self.algorithm, []) if f.name in self.data]
        if any(name in self.errors for name in names):
            return cleaned
        try:
            self.config = experiment_config(self.kind, {name: cleaned[name] for name in names},
                                            project_id=self.project.pk)
        except ConfigError as exc:
            for name, message in exc.errors.items():
                self.add_error(name if name in self.fields else None, message)
            return cleaned
        self._check_dataset_kind(cleaned)
        return cleaned

    def _check_dataset_kind(self, cleaned: dict[str, Any]) -> None:
        """The dataset must be of the kind the algorithm trains on (preference pairs for DPO, a
        text corpus for RMT, prompts otherwise), a curriculum needs a difficulty column, and
        DUMP its distribution column."""
        if not cleaned["dataset"] or self.is_evaluation:
            return  # an evaluation's choices are prompt datasets only
        dataset = datasets_for_project(self.project).get(pk=int(cleaned["dataset"]))
        algorithm = cleaned["algorithm"].upper()
        wanted = algorithm_spec(cleaned["algorithm"]).trains_on
        if wanted != dataset.kind and wanted == DatasetKind.PROMPTS:
            use, trainer = _KIND_USE[dataset.kind]
            self.add_error("dataset", f"This is {use}: choose a prompt dataset, or {trainer}.")
        elif wanted != dataset.kind:
            self.add_error("dataset", f"{algorithm} {_KIND_NEEDED[wanted]}.")
        elif cleaned["prompt_sampler"] == "curriculum" and not dataset.has_difficulty:
            self.add_error("prompt_sampler", "A curriculum orders prompts by difficulty, and "
                                             "this dataset has no difficulty column.")
        elif cleaned["prompt_sampler"] == "dump" and cleaned["dump_column"] not in dataset.roles:
            self.add_error("dump_column", f"This dataset has no {cleaned['dump_column']!r} "
                                          f"column: its columns are {', '.join(dataset.roles)}. "
                                          f"Upload it with a column mapped as the source, and "
                                          f"name 'source' here.")
