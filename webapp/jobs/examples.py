"""The example templates rlab ships (webapp/jobs/recipes/*.json): TRL's GRPOTrainer under
accelerate, veRL on Ray, OpenRLHF on Ray. An admin adds them to a team with one button or
`manage.py job_examples`; each then is a template like any other, to edit or delete.

`{recipes}` in a recipe's command is the folder of the scripts shipped beside the recipes
(trl_grpo.py), filled in when the example is added, so the template names a real file on a
worker installed like this web server.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from django.db import transaction

from webapp.jobs.models import JobTemplate
from webapp.jobs.services import job_template_create
from webapp.teams.models import Team

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


def example_definitions() -> list[dict[str, Any]]:
    """Each shipped recipe's template fields, `{recipes}` filled in, in name order."""
    folder = shlex.quote(str(RECIPES_DIR))
    definitions = []
    for path in sorted(RECIPES_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["command"] = data["command"].replace("{recipes}", folder)
        definitions.append(data)
    return sorted(definitions, key=lambda data: data["name"])


def example_templates_add(*, team: Team, user) -> list[JobTemplate]:
    """Add the examples the team does not have yet (by name), all or none; PermissionDenied
    unless `user` is one of the team's admins. Returns the templates added."""
    have = set(JobTemplate.objects.filter(team=team).values_list("name", flat=True))
    with transaction.atomic():
        return [job_template_create(team=team, user=user, fields=data)
                for data in example_definitions() if data["name"] not in have]
