"""Run parts that other apps' pages show: `{% load runs %}`, then `{% experiment_runs experiment %}`
on an experiment's page, `{% model_choices project %}` beside a form that names models. The page
composes them, so its app (experiments, beneath this one) does not import this one."""

from __future__ import annotations

from django import template

from webapp.runs.model_sources import model_choices as project_model_choices
from webapp.runs.selectors import runs_for_user

register = template.Library()


@register.inclusion_tag("runs/_experiment_runs.html", takes_context=True)
def experiment_runs(context: template.Context, experiment) -> dict:
    """The experiment's runs that the user sees, newest first, with the form that compares the
    ones ticked."""
    return {"experiment": experiment, "project": experiment.project,
            "runs": runs_for_user(context["user"]).filter(experiment=experiment)}


@register.inclusion_tag("_model_choices.html")
def model_choices(project) -> dict:
    """The picker (a <datalist>) of what a run of `project` can load: built-in and registered
    models, and its checkpoints still on disk."""
    return {"choices": project_model_choices(project_id=project.pk)}
