from django import forms

from webapp.queue.services import PRIORITY_MAX, PRIORITY_MIN


class PriorityForm(forms.Form):
    """A queued run's new priority: an exact one, or one step up or down from its own."""

    priority = forms.IntegerField(required=False, min_value=PRIORITY_MIN,
                                  max_value=PRIORITY_MAX)
    step = forms.ChoiceField(required=False, choices=[("up", "Raise"), ("down", "Lower")])

    def clean(self):
        cleaned = super().clean()
        if not self.errors and (cleaned.get("priority") is None) == (not cleaned.get("step")):
            raise forms.ValidationError("Give either a priority or a step up or down.")
        return cleaned

    def new_priority(self, current: int) -> int:
        """The priority asked for, for a run whose priority is `current`."""
        if self.cleaned_data["step"]:
            return current + (1 if self.cleaned_data["step"] == "up" else -1)
        return self.cleaned_data["priority"]

    def error_text(self) -> str:
        return " ".join(f"{'Priority: ' if name == 'priority' else ''}{message}"
                        for name, messages in self.errors.items() for message in messages)
