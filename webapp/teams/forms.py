from django import forms
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm

from webapp.teams.models import Role


class TeamForm(forms.Form):
    name = forms.CharField(max_length=120)


class InvitationForm(forms.Form):
    email = forms.EmailField(help_text="For your records: the link works for whoever opens it.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class SignUpForm(UserCreationForm):
    """Accounts are made from an invitation link; passwords go through the validators. An email
    address is asked for only where this server sends mail: for password reset links."""

    email = forms.EmailField(required=False, help_text="Optional: where a password reset link "
                                                       "is sent if you forget your password.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not settings.RLAB_PASSWORD_RESET_BY_EMAIL:
            del self.fields["email"]


class PasswordLinkForm(forms.Form):
    username = forms.CharField(max_length=150)
