"""`manage.py password_link USERNAME`: a one-time link where the user sets a new password, for an
administrator to pass on; rlab sends no mail unless EMAIL_HOST is set."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from webapp.teams.services import password_reset_link


class Command(BaseCommand):
    help = "Print a one-time link where USERNAME sets a new password."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--url", default="http://127.0.0.1:8000",
                            help="Where users reach rlab (default: %(default)s).")

    def handle(self, *args, username: str, url: str, **options) -> None:
        try:
            link = password_reset_link(username=username, base_url=url)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(link)
