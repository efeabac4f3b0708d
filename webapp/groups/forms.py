"""The statistics page's choices (a GET form, so a comparison is a link)."""

from __future__ import annotations

from django import forms

from webapp.groups.aligned import BANDS, REDUCES
from webapp.groups.statistics import MAX_LAST_K, NORMALISE, Reading

STEP, LAST_K = "step", "last"
DEFAULT_K = 10


class SeriesForm(forms.Form):
    """A group chart's choices: the metric, the band and how a bucket reads a run."""

    metric = forms.CharField(max_length=500)
    band = forms.ChoiceField(choices=list(BANDS.items()), required=False)
    reduce = forms.ChoiceField(choices=list(REDUCES.items()), required=False)


class StatisticsForm(forms.Form):
    read = forms.ChoiceField(choices=[(LAST_K, "Mean of the last k points"),
                                      (STEP, "At a step")], required=False)
    step = forms.IntegerField(required=False, min_value=0, max_value=2**63 - 1,
                              help_text="The last point at or before this step.")
    k = forms.IntegerField(required=False, min_value=1, max_value=MAX_LAST_K,
                           help_text="How many of a run's last points are averaged.")
    baseline = forms.CharField(required=False, max_length=40)
    normalise = forms.ChoiceField(choices=list(NORMALISE.items()), required=False)

    def clean(self):
        data = super().clean()
        if data.get("read") == STEP and data.get("step") is None and "step" not in self.errors:
            self.add_error("step", "Give the step to read the metric at.")
        return data

    def reading(self) -> Reading:
        if self.cleaned_data.get("read") == STEP:
            return Reading(step=self.cleaned_data["step"])
        return Reading(last_k=self.cleaned_data.get("k") or DEFAULT_K)
