"""The template form (parameters and environment as JSON, with an example beside them) and the
launch form generated from a template's parameters: typed inputs with their bounds, a select for
a choice, a checkbox for a bool. Both check nothing themselves: webapp.jobs.services and
webapp.jobs.parameters hold the rules, and their errors are placed on the fields here."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from webapp.common.inputs import MalformedJson, json_parse
from webapp.jobs.models import JobTemplate, RolloutFormat
from webapp.jobs.parameters import Parameter, value_text
from webapp.queue.services import PRIORITY_MAX, PRIORITY_MIN

PARAMETERS_EXAMPLE = ('[{"name": "lr", "type": "float", "default": 1e-06, "min": 0, "max": 0.01},\n'
                      ' {"name": "procs", "type": "int", "default": 1, "min": 1, "max": 8}]')


class TemplateForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, max_length=5000,
                                  widget=forms.Textarea(attrs={"rows": 2}))
    command = forms.CharField(
        max_length=10_000, widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        help_text="Split into arguments as a shell would, never run by one. {name} is a "
                  "parameter's value (one argument, or part of one: --lr={lr}); {output_dir} is "
                  "the run's folder on the worker, {run_id} its id; {{ and }} are braces.")
    parameters = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 6, "class": "mono"}),
        help_text="A JSON list. Each: name, type (int, float, str, bool, choice), default, min "
                  "and max (int, float), max_length and regex (str), choices (choice), help, "
                  "required, allow_dash (may a text start with -). For example: "
                  + PARAMETERS_EXAMPLE)
    environment = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2, "class": "mono"}),
        help_text='A JSON object, name to value; values may hold placeholders: '
                  '{"HF_HOME": "/models"}. RLAB_*, MLFLOW_TRACKING_* and MLFLOW_RUN_ID are '
                  "rlab's own.")
    working_dir = forms.CharField(required=False, max_length=1000,
                                  help_text=JobTemplate._meta.get_field("working_dir").help_text)
    queue = forms.CharField(max_length=20, initial="cpu",
                            help_text=JobTemplate._meta.get_field("queue").help_text)
    devices = forms.CharField(max_length=60, initial="1",
                              help_text=JobTemplate._meta.get_field("devices").help_text)
    rollouts_format = forms.ChoiceField(choices=RolloutFormat.choices, required=False)
    rollouts_path = forms.CharField(
        required=False, max_length=500,
        help_text=JobTemplate._meta.get_field("rollouts_path").help_text)
    checkpoints_path = forms.CharField(
        required=False, max_length=500,
        help_text=JobTemplate._meta.get_field("checkpoints_path").help_text)
    resume_arguments = forms.CharField(
        required=False, max_length=2000,
        help_text=JobTemplate._meta.get_field("resume_arguments").help_text)

    @classmethod
    def initial_of(cls, template: JobTemplate) -> dict[str, Any]:
        data = {name: getattr(template, name) for name in cls.base_fields}
        data["parameters"] = json.dumps(template.parameters, indent=1)
        data["environment"] = json.dumps(template.environment) if template.environment else ""
        return data

    def _json(self, name: str, empty: Any) -> Any:
        text = self.cleaned_data.get(name, "").strip()
        if not text:
            return empty
        try:
            return json_parse(text.encode("utf-8", "surrogatepass"))
        except MalformedJson as exc:
            raise forms.ValidationError(f"Not JSON: {exc}") from None

    def clean_parameters(self) -> Any:
        return self._json("parameters", [])

    def clean_environment(self) -> Any:
        return self._json("environment", {})

    def errors_place(self, errors: dict[str, str]) -> None:
        for where, message in errors.items():
            self.add_error(where if where in self.fields else None, message)


class LaunchForm(forms.Form):
    project = forms.ModelChoiceField(queryset=None, empty_label=None)
    experiment_name = forms.CharField(
        required=False, max_length=120,
        help_text="The experiment its runs are grouped in; empty: the template's name.")
    priority = forms.IntegerField(initial=0, min_value=PRIORITY_MIN, max_value=PRIORITY_MAX,
                                  help_text="Higher runs first among the queue's waiting runs.")

    def __init__(self, *args, projects, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects


class ParametersForm(forms.Form):
    """One field per parameter, named as the parameter; the values are checked by
    script_run_launch, whose errors errors_place puts beside each field."""

    def __init__(self, *args, parameters: list[Parameter], **kwargs):
        super().__init__(*args, **kwargs)
        for parameter in parameters:
            self.fields[parameter.name] = _field(parameter)

    def errors_place(self, errors: dict[str, str]) -> None:
        for where, message in errors.items():
            self.add_error(where if where in self.fields else None, message)


def _field(parameter: Parameter) -> forms.Field:
    label = parameter.name
    initial = "" if parameter.default is None else parameter.default
    common = {"label": label, "required": False, "help_text": parameter.help}
    if parameter.type in ("int", "float"):
        attrs = {"step": "1" if parameter.type == "int" else "any"}
        for bound in ("min", "max"):
            if getattr(parameter, bound) is not None:
                attrs[bound] = value_text(getattr(parameter, bound))
        return forms.CharField(widget=forms.NumberInput(attrs=attrs),
                               initial=value_text(initial) if initial != "" else "", **common)
    if parameter.type == "bool":
        return forms.CharField(widget=forms.CheckboxInput, initial=bool(initial), **common)
    if parameter.type == "choice":
        return forms.ChoiceField(choices=[(c, c) for c in parameter.choices], initial=initial,
                                 **common)
    # No `pattern` attribute: a browser reads it as a JavaScript regex, whose syntax differs.
    attrs = {"maxlength": str(parameter.max_length)}
    return forms.CharField(widget=forms.TextInput(attrs=attrs), initial=initial, strip=False,
                           **common)
