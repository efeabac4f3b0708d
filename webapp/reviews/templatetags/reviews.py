"""Review parts that other apps' pages show: `{% load reviews %}`, then `{% team_labels team %}`
on the team page, `{% run_review_bar run can_edit=… %}` and `{% run_comments run %}` on the run
page, `{% project_activity project %}` on the project page. The page composes them, so its app
does not import this one."""

from __future__ import annotations

from django import template

from webapp.reviews.selectors import activity_for_project
from webapp.reviews.services import labels_for_team
from webapp.reviews.views import run_review_context

register = template.Library()


@register.inclusion_tag("reviews/_team_labels.html", takes_context=True)
def team_labels(context: template.Context, team, *, can_edit: bool = False) -> dict:
    """The team's annotation labels, and for its admins (`can_edit`) the form that adds one."""
    return {"team": team, "labels": labels_for_team(team.pk), "can_edit": can_edit,
            "csrf_token": context.get("csrf_token")}


@register.inclusion_tag("reviews/_run_review.html#review-bar", takes_context=True)
def run_review_bar(context: template.Context, run, *, can_edit: bool) -> dict:
    """The run page's star, tags and notes; for members (`can_edit`), the forms that change the
    tags and notes."""
    return {**run_review_context(run, context["user"]), "can_edit": can_edit,
            "csrf_token": context.get("csrf_token")}


@register.inclusion_tag("reviews/_run_review.html#comments", takes_context=True)
def run_comments(context: template.Context, run) -> dict:
    """The run page's comments, with the form that adds one."""
    return {**run_review_context(run, context["user"]), "user": context["user"],
            "csrf_token": context.get("csrf_token")}


@register.inclusion_tag("reviews/_activity.html")
def project_activity(project) -> dict:
    """The project page's latest activity."""
    return {"activities": activity_for_project(project, limit=10)}
