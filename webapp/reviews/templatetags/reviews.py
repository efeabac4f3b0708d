"""Review parts that other apps' pages show: `{% load reviews %}`, then `{% team_labels team %}`
on the team page. The page composes them, so its app does not import this one."""

from __future__ import annotations

from django import template

from webapp.reviews.services import labels_for_team

register = template.Library()


@register.inclusion_tag("reviews/_team_labels.html", takes_context=True)
def team_labels(context: template.Context, team, *, can_edit: bool = False) -> dict:
    """The team's annotation labels, and for its admins (`can_edit`) the form that adds one."""
    return {"team": team, "labels": labels_for_team(team.pk), "can_edit": can_edit,
            "csrf_token": context.get("csrf_token")}
