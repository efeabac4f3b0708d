from django import forms

from webapp.projects.models import Project
from webapp.projects.services import MAX_CONCURRENT_RUNS_BOUNDS
from webapp.teams.models import Role
from webapp.teams.selectors import teams_where_user_can


class ProjectForm(forms.Form):
    team = forms.ModelChoiceField(queryset=None, empty_label=None,
                                  help_text="Its members will see the project.")
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams_where_user_can(user, Role.MEMBER)

    def clean(self):
        cleaned = super().clean()
        team, name = cleaned.get("team"), cleaned.get("name")
        if team and name and Project.objects.filter(team=team, name=name.strip()).exists():
            self.add_error("name", "This team already has a project with this name.")
        return cleaned

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()


class ProjectLimitForm(forms.Form):
    max_concurrent_runs = forms.IntegerField(
        required=False, min_value=MAX_CONCURRENT_RUNS_BOUNDS[0],
        max_value=MAX_CONCURRENT_RUNS_BOUNDS[1], label="Runs at once",
        help_text="At most this many of the project's runs start or run at once; more wait "
                  "queued, in order. Empty: no limit.")
