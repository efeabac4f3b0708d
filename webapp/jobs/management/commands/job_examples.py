"""`manage.py job_examples TEAM_ID --user USERNAME`: add the shipped example templates (TRL,
veRL, OpenRLHF) to a team, as its admin USERNAME would with the button on the templates page."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from webapp.jobs.examples import example_templates_add
from webapp.teams.models import Team


class Command(BaseCommand):
    help = "Add the example job templates (TRL, veRL, OpenRLHF) to a team."

    def add_arguments(self, parser) -> None:
        parser.add_argument("team_id", type=int)
        parser.add_argument("--user", required=True, help="An admin of the team, who adds them.")

    def handle(self, *args, team_id: int, user: str, **options) -> None:
        team = Team.objects.filter(pk=team_id).first()
        admin = get_user_model().objects.filter(username=user).first()
        if team is None or admin is None:
            raise CommandError(f"No team {team_id}, or no user {user}.")
        try:
            added = example_templates_add(team=team, user=admin)
        except PermissionDenied:
            raise CommandError(f"{user} is not an admin of {team.name}.") from None
        for template in added:
            self.stdout.write(f"added {template.name} ({template.pk})")
        if not added:
            self.stdout.write(f"{team.name} has every example already.")
