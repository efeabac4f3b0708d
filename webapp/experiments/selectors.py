from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.experiments.models import Experiment
from webapp.projects.selectors import projects_for_user


def experiments_for_user(user) -> QuerySet[Experiment]:
    return Experiment.objects.filter(project__in=projects_for_user(user)).select_related(
        "project", "author")


def get_experiment_for_user(user, experiment_id: int) -> Experiment:
    return get_object_or_404(experiments_for_user(user), pk=experiment_id)
