"""Evaluation parts that other apps' pages show: `{% load evaluations %}`, then
`{% evaluation_jobs experiment %}` on an evaluation's page. The page composes them, so its app
(experiments, beneath this one) does not import this one."""

from __future__ import annotations

from django import template

from webapp.evaluations.selectors import evaluation_jobs as jobs_with_results
from webapp.evaluations.forms import EvaluateForm
from webapp.runs.selectors import runs_for_user

register = template.Library()


@register.inclusion_tag("evaluations/_jobs.html", takes_context=True)
def evaluation_jobs(context: template.Context, experiment) -> dict:
    """The evaluation's jobs with their results, and the form that launches one."""
    runs = (runs_for_user(context["user"]).filter(experiment=experiment)
            .select_related("evaluated_checkpoint__run__experiment"))
    return {"experiment": experiment, "project": experiment.project,
            "jobs": jobs_with_results(runs),
            "evaluate_form": EvaluateForm(project=experiment.project),
            "csrf_token": context.get("csrf_token")}
