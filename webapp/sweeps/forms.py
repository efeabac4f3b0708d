"""The sweep form: the definition's fields, its axes as rows of a formset (setting, kind, values
or a range), or the same YAML that `rlab sweep` reads, in a text area. Either way it becomes the
definition dict that webapp.sweeps.definition checks, and that check's errors come back next to
the field or axis row they concern."""

from __future__ import annotations

from typing import Any

import yaml
from django import forms

from training.spec.config import RunConfig
from webapp.experiments.models import ExperimentKind
from webapp.sweeps.definition import DEFAULT_STARTUP_TRIALS
from webapp.sweeps.models import SweepMethod

AXIS_ROWS = 3
YAML_MAX = 100_000

# Where each of the definition's error keys goes on the form.
FIELD_OF = {"experiment": "experiment", "name": "name", "method": "method",
            "objective": "metric", "objective.metric": "metric",
            "objective.direction": "direction", "pruner": "pruner",
            "pruner.startup_trials": "startup_trials", "pruner.warmup_steps": "warmup_steps",
            "budget": "budget", "max_concurrent": "max_concurrent", "seeds": "seeds"}


def _setting_choices() -> list[tuple[str, str]]:
    names = sorted({f.name for f, _ in RunConfig.every_field()})
    return [("", "(none)"), *((name, name) for name in names)]


class AxisForm(forms.Form):
    setting = forms.ChoiceField(choices=_setting_choices, required=False)
    kind = forms.ChoiceField(choices=[("values", "values"), ("uniform", "uniform"),
                                      ("log_uniform", "log-uniform")], required=False)
    values = forms.CharField(required=False, max_length=5000,
                             help_text="Listed values, separated by commas.")
    low = forms.CharField(required=False, max_length=100)
    high = forms.CharField(required=False, max_length=100)

    def axis(self) -> tuple[str, dict[str, list]] | None:
        """(setting, spec) as the definition has it; None for an empty row."""
        data = self.cleaned_data
        if not data.get("setting"):
            return None
        if data["kind"] == "values":
            items = [item.strip() for item in data["values"].split(",") if item.strip()]
            return data["setting"], {"values": [_scalar(item) for item in items]}
        return data["setting"], {data["kind"]: [data["low"].strip(), data["high"].strip()]}


def _scalar(text: str) -> Any:
    """A listed value as typed: true/false are booleans; the setting's own parsing turns the
    rest into numbers or text."""
    return {"true": True, "false": False}.get(text.lower(), text)


AxisFormSet = forms.formset_factory(AxisForm, extra=AXIS_ROWS, max_num=50, absolute_max=50)


class SweepForm(forms.Form):
    definition_yaml = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 12, "class": "mono"}),
        max_length=YAML_MAX, label="Or the whole definition as YAML",
        help_text="The same YAML as `rlab sweep` reads; when given, the fields above are "
                  "ignored.")
    experiment = forms.ModelChoiceField(queryset=None, label="Base experiment", required=False)
    name = forms.CharField(max_length=120, required=False)
    method = forms.ChoiceField(choices=SweepMethod.choices, initial=SweepMethod.GRID)
    metric = forms.CharField(max_length=250, required=False, label="Objective metric",
                             help_text="A metric the runs log, e.g. eval/pass@1 or reward/mean.")
    direction = forms.ChoiceField(choices=[("maximize", "maximize"), ("minimize", "minimize")])
    pruner = forms.BooleanField(required=False, label="Median pruner",
                                help_text="Stop a run whose objective falls below the median "
                                          "of the finished trials at the same step.")
    startup_trials = forms.IntegerField(min_value=0, initial=DEFAULT_STARTUP_TRIALS,
                                        required=False,
                                        help_text="Trials that finish before it stops any.")
    warmup_steps = forms.IntegerField(min_value=0, initial=0, required=False,
                                      help_text="Steps before it stops a run.")
    # Not required here: with a YAML definition they are the YAML's; without, the definition's
    # check says what is missing.
    budget = forms.IntegerField(min_value=1, initial=8, required=False,
                                help_text="The most runs it launches.")
    max_concurrent = forms.IntegerField(min_value=1, initial=2, required=False,
                                        help_text="The most of its runs at once.")
    seeds = forms.CharField(required=False, max_length=2000,
                            help_text="Optional, e.g. 1, 2, 3: every trial runs once per seed.")

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["experiment"].queryset = project.experiments.filter(
            kind=ExperimentKind.TRAINING)

    def definition(self) -> dict[str, Any]:
        """The definition dict; the YAML's when the text area holds any (a YAML that does not
        parse is a form error)."""
        data = self.cleaned_data
        if data["definition_yaml"].strip():
            try:
                return yaml.safe_load(data["definition_yaml"])
            except yaml.YAMLError as exc:
                self.add_error("definition_yaml", f"This is not YAML: {exc}")
                return {}
        pruner = ({"median": {"startup_trials": data["startup_trials"] or 0,
                              "warmup_steps": data["warmup_steps"] or 0}}
                  if data["pruner"] else None)
        definition = {"experiment": data["experiment"].pk if data["experiment"] else None,
                      "name": data["name"], "method": data["method"],
                      "objective": {"metric": data["metric"], "direction": data["direction"]},
                      "pruner": pruner, "budget": data["budget"],
                      "max_concurrent": data["max_concurrent"]}
        seeds = [item.strip() for item in data["seeds"].split(",") if item.strip()]
        if seeds:
            definition["seeds"] = [int(seed) if seed.isdigit() else seed for seed in seeds]
        return definition

    def errors_place(self, errors: dict[str, str], axes: AxisFormSet) -> None:
        """Put the definition's errors next to the field or the axis row they concern; those of
        a YAML definition next to its text area."""
        rows = {form.cleaned_data.get("setting"): form for form in axes.forms
                if form.cleaned_data.get("setting")}
        yaml_given = bool(self.cleaned_data["definition_yaml"].strip())
        for where, message in errors.items():
            if yaml_given:
                self.add_error("definition_yaml", f"{where}: {message}")
            elif where.startswith("axes.") and where[5:] in rows:
                rows[where[5:]].add_error(None, message)
            elif where in FIELD_OF:
                self.add_error(FIELD_OF[where], message)
            else:
                self.add_error(None, f"{where}: {message}")
