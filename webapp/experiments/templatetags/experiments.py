"""Experiment parts that other apps' pages show: `{% load experiments %}`, then
`{% project_experiments project can_edit=… %}` on the project page. The page composes them, so
its app (projects, beneath this one) does not import this one."""

from __future__ import annotations

from django import template

from webapp.experiments.models import ExperimentKind
from webapp.experiments.selectors import experiments_for_user

register = template.Library()


@register.inclusion_tag("experiments/_project_experiments.html", takes_context=True)
def project_experiments(context: template.Context, project, *, can_edit: bool = False) -> dict:
    """The project's experiments and its evaluations, each with its runs, newest first."""
    definitions = (experiments_for_user(context["request"].user).filter(project=project)
                   .prefetch_related("runs"))
    return {"project": project, "can_edit": can_edit,
            "experiments": definitions.exclude(kind=ExperimentKind.EVALUATION),
            "evaluations": definitions.filter(kind=ExperimentKind.EVALUATION)}
