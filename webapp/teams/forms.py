from django import forms
from django.contrib.auth.forms import UserCreationForm

from webapp.teams.models import Role, Team


class TeamForm(forms.Form):
    name = forms.CharField(max_length=120)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if Team.objects.filter(name=name).exists():
            raise forms.ValidationError("A team with this name already exists.")
        return name


class InvitationForm(forms.Form):
    email = forms.EmailField(help_text="For your records: the link works for whoever opens it.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class SignUpForm(UserCreationForm):
    """Accounts are made from an invitation link; passwords go through the validators."""
