from django import forms


class CommentForm(forms.Form):
    body = forms.CharField(label="Comment", max_length=10_000,
                           widget=forms.Textarea(attrs={"rows": 3, "placeholder":
                                                        "What do you see in this run?"}))


class AnnotationForm(forms.Form):
    label = forms.ChoiceField(choices=())
    note = forms.CharField(max_length=5_000, required=False,
                           widget=forms.Textarea(attrs={"rows": 2, "placeholder":
                                                        "Why? (optional)"}))

    def __init__(self, *args, labels: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["label"].choices = [(name, name) for name in labels]


class TagForm(forms.Form):
    name = forms.CharField(label="Tag", max_length=40)


class NotesForm(forms.Form):
    notes = forms.CharField(max_length=20_000, required=False,
                            widget=forms.Textarea(attrs={"rows": 4}))


class LabelForm(forms.Form):
    name = forms.CharField(label="New label", max_length=40)


class ReviewFilterForm(forms.Form):
    label = forms.ChoiceField(choices=(), required=False)
    run = forms.ChoiceField(choices=(), required=False)
    author = forms.ChoiceField(choices=(), required=False)

    def __init__(self, *args, labels, runs, authors, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["label"].choices = [("", "any label")] + [(n, n) for n in labels]
        self.fields["run"].choices = [("", "any run")] + [(str(r.pk), str(r)) for r in runs]
        self.fields["author"].choices = [("", "anyone")] + [
            (str(u.pk), u.get_username()) for u in authors]
