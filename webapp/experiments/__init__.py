"""Experiments: the definitions a project launches, a training config or an evaluation recipe,
and the sectioned form that edits them."""
