"""The runs table's forms: the GET form of its filters, order, grouping and page (so a view of
the table is a link), the column picker, and the actions on the runs a user ticked."""

from __future__ import annotations

from django import forms

from webapp.projects.models import Project
from webapp.runs.models import METRIC_KEY_MAX_LENGTH, RunStatus
from webapp.runs_table.columns import (
    CONFIG_KEY_MAX_LENGTH,
    DEFAULT_SORT,
    MAX_K,
    Column,
    ColumnError,
    parse_columns,
)
from webapp.runs_table.paging import Sort
from webapp.runs_table.selectors import GROUP_BY, Filters, sort_for

MAX_GROUP_SETTINGS = 5
MAX_PICKED = 500  # ticked runs in one action: a page holds 50


class TableForm(forms.Form):
    q = forms.CharField(required=False, max_length=1000, label="Search",
                        help_text="Words search run and experiment names; a filter in MLflow's "
                                  "grammar filters: metrics.`reward/mean` > 0.5 and "
                                  "params.seed = 1 (a key with / or - in backticks).")
    status = forms.MultipleChoiceField(required=False, choices=RunStatus.choices,
                                       widget=forms.CheckboxSelectMultiple)
    tag = forms.CharField(required=False, max_length=40)
    author = forms.CharField(required=False, max_length=150)
    experiment = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    sweep = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    config_key = forms.CharField(required=False, max_length=CONFIG_KEY_MAX_LENGTH,
                                 label="Setting")
    config_value = forms.CharField(required=False, max_length=500, label="is")
    metric_key = forms.CharField(required=False, max_length=METRIC_KEY_MAX_LENGTH,
                                 label="Metric (last value)")
    metric_min = forms.FloatField(required=False, label="from")
    metric_max = forms.FloatField(required=False, label="to")
    starred = forms.BooleanField(required=False, label="Starred only")
    sort = forms.CharField(required=False, max_length=400)
    order = forms.ChoiceField(required=False, choices=[("desc", "descending"),
                                                        ("asc", "ascending")])
    group = forms.ChoiceField(required=False, label="Group by", choices=[
        ("", "no grouping"), ("seed_group", "config less seed"),
        ("config", "chosen settings"), ("tag", "tag")])
    group_settings = forms.CharField(required=False, max_length=1000,
                                     help_text="Settings to group by, separated by commas.")
    after = forms.CharField(required=False, max_length=16_000)  # a long setting sorted by
    expand = forms.CharField(required=False, max_length=4000)

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["experiment"].choices = [("", "any experiment")] + [
            (e.pk, e.name) for e in project.experiments.order_by("name")]
        self.fields["sweep"].choices = [("", "any sweep")] + [
            (s.pk, s.name) for s in project.sweeps.order_by("-pk")[:200]]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        ascending = data.get("order") == "asc"
        try:
            data["sort_spec"] = sort_for(data.get("sort") or DEFAULT_SORT, ascending)
        except ColumnError as exc:
            self.add_error("sort", str(exc))
        low, high = data.get("metric_min"), data.get("metric_max")
        if (low is not None or high is not None) and not data.get("metric_key"):
            self.add_error("metric_key", "Name the metric whose range you filter by.")
        if low is not None and high is not None and low > high:
            self.add_error("metric_max", "The range ends below where it starts.")
        settings = [s.strip() for s in (data.get("group_settings") or "").split(",")
                    if s.strip()]
        data["group_settings_list"] = list(dict.fromkeys(settings))
        if data.get("group") == "config":
            if not settings:
                self.add_error("group_settings", "Name the settings to group by, e.g. "
                                                 "learning_rate, beta.")
            elif len(settings) > MAX_GROUP_SETTINGS:
                self.add_error("group_settings",
                               f"Group by at most {MAX_GROUP_SETTINGS} settings.")
        if data.get("group") and data.get("group") not in GROUP_BY:
            self.add_error("group", "Group by config less seed, chosen settings or tag.")
        return data

    @property
    def sort_spec(self) -> Sort:
        return self.cleaned_data["sort_spec"]

    def filters(self) -> Filters:
        data = self.cleaned_data
        return Filters(
            q=data["q"], statuses=data["status"], tag=data["tag"], author=data["author"],
            experiment_id=data["experiment"], sweep_id=data["sweep"],
            config_key=data["config_key"].strip(), config_value=data["config_value"],
            metric_key=data["metric_key"].strip(), metric_min=data["metric_min"],
            metric_max=data["metric_max"], starred=data["starred"])


class ColumnPickerForm(forms.Form):
    """The columns to keep (ticked), and one to add: a setting, or a metric shown one way."""

    columns = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    add_config = forms.CharField(required=False, max_length=CONFIG_KEY_MAX_LENGTH,
                                 label="Add a setting")
    add_metric = forms.CharField(required=False, max_length=METRIC_KEY_MAX_LENGTH,
                                 label="Add a metric")
    add_aggregate = forms.ChoiceField(required=False, label="shown as", initial="last", choices=[
        ("last", "last value"), ("min", "best: lowest"), ("max", "best: highest"),
        ("mean", "mean of the last k")])
    add_k = forms.IntegerField(required=False, min_value=1, max_value=MAX_K, initial=10,
                               label="k")

    def __init__(self, *args, current: list[Column], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["columns"].choices = [(c.id, c.label) for c in current]
        self.fields["columns"].initial = [c.id for c in current]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        ids = list(data.get("columns") or [])
        if data.get("add_config", "").strip():
            ids.append(f"config:{data['add_config'].strip()}")
        if data.get("add_metric", "").strip():
            aggregate = data.get("add_aggregate") or "last"
            if aggregate == "mean":
                ids.append(f"metric:mean:{data.get('add_k') or 10}:{data['add_metric'].strip()}")
            else:
                ids.append(f"metric:{aggregate}:{data['add_metric'].strip()}")
        try:
            data["picked"] = parse_columns(ids)
        except ColumnError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return data


class ActionForm(forms.Form):
    ACTIONS = [("compare", "Compare"), ("tag", "Tag"), ("cancel", "Cancel")]

    action = forms.ChoiceField(choices=ACTIONS)
    runs = forms.TypedMultipleChoiceField(coerce=int, required=False)
    tag_name = forms.CharField(required=False, max_length=40)
    back = forms.CharField(required=False, max_length=4000)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # any number: the services keep only the project's runs
        self.fields["runs"].valid_value = lambda value: str(value).isdigit() and len(
            str(value)) < 19

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        if not data.get("runs"):
            raise forms.ValidationError("Tick the runs to act on first.")
        if len(data["runs"]) > MAX_PICKED:
            raise forms.ValidationError(f"Act on at most {MAX_PICKED} runs at once.")
        if data["action"] == "tag" and not data.get("tag_name", "").strip():
            self.add_error("tag_name", "Name the tag to add.")
        return data
