"""Artifact parts that the run page shows: `{% load artifacts %}`, then `{% run_artifacts run %}`
(the Artifacts panel: the run's files as folders, and the models it logged; nothing when it has
neither). The run page's app (runs, beneath this one) does not import this one."""

from __future__ import annotations

from posixpath import basename

from django import template

from webapp.artifacts.views import listing_context

register = template.Library()


@register.inclusion_tag("artifacts/artifact_list.html#panel")
def run_artifacts(run) -> dict:
    """The run's Artifacts panel, from the top folder of its files."""
    context = listing_context(run, model_id=None, path="")
    return {**context, "show": bool(context["logged_models"] or not context["listing"].empty)}


@register.filter
def file_name(path: str) -> str:
    """The last part of an artifact's path.

    >>> file_name("checkpoints/step-10/model.safetensors")
    'model.safetensors'
    """
    return basename(path)
