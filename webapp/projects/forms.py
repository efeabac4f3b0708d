from django import forms

from webapp.projects.models import Project


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if Project.objects.filter(name=name).exists():
            raise forms.ValidationError("A project with this name already exists.")
        return name
