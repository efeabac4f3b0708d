from django import forms

from webapp.api.models import ApiToken


class ApiTokenForm(forms.ModelForm):
    """The name of a new token. Only validates: webapp.api.tokens.token_create makes the row,
    since the token's secret is generated there and must never reach the form."""

    class Meta:
        model = ApiToken
        fields = ["name"]
