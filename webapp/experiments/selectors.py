from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.experiments.models import Experiment
from webapp.projects.selectors import projects_for_user
from webapp.teams.models import Role
from webapp.teams.selectors import require_role


def experiments_for_user(user) -> QuerySet[Experiment]:
    return Experiment.objects.filter(project__in=projects_for_user(user)).select_related(
        "project", "project__team", "author")


def get_experiment_for_user(user, experiment_id: int, role: str = Role.VIEWER) -> Experiment:
    experiment = get_object_or_404(experiments_for_user(user), pk=experiment_id)
    require_role(user, experiment.project.team_id, role)
    return experiment
