from __future__ import annotations

from django.db.models import QuerySet

from webapp.projects.models import Project
from webapp.reviews.models import Activity, Annotation


def annotations_for_project(project: Project, *, label: str = "", run_id: int | None = None,
                            author_id: int | None = None) -> QuerySet[Annotation]:
    annotations = (Annotation.objects
                   .filter(rollout__run__experiment__project=project)
                   .select_related("author", "rollout", "rollout__run",
                                   "rollout__run__experiment"))
    if label:
        annotations = annotations.filter(label=label)
    if run_id:
        annotations = annotations.filter(rollout__run_id=run_id)
    if author_id:
        annotations = annotations.filter(author_id=author_id)
    return annotations


def activity_for_project(project: Project, *, limit: int = 100) -> list[Activity]:
    return list(Activity.objects.filter(project=project)
                .select_related("actor", "run", "run__experiment")[:limit])
