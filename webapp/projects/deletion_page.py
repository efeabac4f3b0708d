"""The confirmation page that every deletion view shows (templates/confirm_delete.html)."""

from __future__ import annotations

from collections.abc import Sequence

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from webapp.projects.deletion import DeletionPlan
from webapp.projects.models import Project


def confirm_delete_response(request: HttpRequest, *, what: str, project: Project,
                            back_url: str, plan: DeletionPlan,
                            refusals: Sequence[str] | None = None, notes: Sequence[str] = (),
                            confirm_name: str = "", name_error: str = "") -> HttpResponse:
    """The page (or, to htmx, its card) that says what deleting `what` removes, with the form
    that deletes it; without it when the deletion is refused (`refusals`: the plan's, unless
    a POST was refused for other ones). 422 after a POST that did not delete."""
    refused = request.method == "POST"
    template = "confirm_delete.html#confirm" if request.htmx else "confirm_delete.html"
    return render(request, template, {
        "what": what, "project": project, "back_url": back_url, "plan": plan,
        "refusals": plan.refusals if refusals is None else refusals, "notes": notes,
        "confirm_name": confirm_name, "name_error": name_error,
    }, status=422 if refused else 200)
