"""Writes for review. Callers have checked the actor's role (views use get_*_for_user)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from webapp.projects.activity import Verb
from webapp.reviews.models import (
    BUILTIN_LABELS,
    Activity,
    Annotation,
    Comment,
    RunStar,
    RunTag,
    TeamLabel,
)
from webapp.runs.models import Rollout, Run
from webapp.teams.models import Team


def activity_record(*, run: Run, actor, verb: str, detail: str = "") -> Activity:
    return Activity.objects.create(project_id=run.experiment.project_id, actor=actor,
                                   verb=verb, run=run, detail=detail[:300])


def activity_record_announced(sender, *, run: Run, actor, verb: str, detail: str,
                               **kwargs) -> None:
    """Record what an app announced with webapp.projects.activity.activity (connected in
    ReviewsConfig.ready)."""
    activity_record(run=run, actor=actor, verb=verb, detail=detail)


def activity_record_deletion(*, project_id: int, actor, detail: str) -> Activity:
    """Record in the project's feed that `actor` deleted what `detail` names: the row is gone,
    so the entry links to nothing."""
    return Activity.objects.create(project_id=project_id, actor=actor, verb=Verb.DELETED,
                                   detail=detail[:300])


def labels_for_team(team_id: int) -> list[str]:
    own = TeamLabel.objects.filter(team_id=team_id).values_list("name", flat=True)
    return BUILTIN_LABELS + [name for name in own if name not in BUILTIN_LABELS]


def label_create(*, team: Team, name: str) -> TeamLabel:
    name = " ".join(name.split()).lower()
    if not name:
        raise ValidationError("A label needs a name.")
    if len(name) > TeamLabel._meta.get_field("name").max_length:
        raise ValidationError("A label is at most 40 characters.")
    if name in BUILTIN_LABELS or TeamLabel.objects.filter(team=team, name=name).exists():
        raise ValidationError(f"The label {name!r} exists already.")
    return TeamLabel.objects.create(team=team, name=name)


def comment_create(*, run: Run, author, body: str) -> Comment:
    body = body.strip()
    if not body:
        raise ValidationError("Write something first.")
    with transaction.atomic():
        comment = Comment.objects.create(run=run, author=author, body=body)
        activity_record(run=run, actor=author, verb=Verb.COMMENTED, detail=body[:120])
    return comment


def comment_delete(*, comment: Comment, actor) -> None:
    if comment.author_id != actor.pk:
        raise PermissionDenied("Only its author can delete a comment.")
    comment.delete()


def annotation_create(*, rollout: Rollout, author, label: str, note: str) -> Annotation:
    team_id = rollout.run.experiment.project.team_id
    if label not in labels_for_team(team_id):
        raise ValidationError(f"Unknown label {label!r}: pick one of the team's labels.")
    try:
        with transaction.atomic():
            annotation = Annotation.objects.create(rollout=rollout, author=author, label=label,
                                                   note=note.strip())
            activity_record(run=rollout.run, actor=author, verb=Verb.ANNOTATED,
                            detail=f"{label}: step {rollout.step}, sample "
                                   f"{rollout.group}.{rollout.sample_index}")
    except IntegrityError:
        raise ValidationError(f"You already labelled this rollout {label!r}.") from None
    return annotation


def annotation_delete(*, annotation: Annotation, actor) -> None:
    if annotation.author_id != actor.pk:
        raise PermissionDenied("Only its author can delete an annotation.")
    annotation.delete()


def run_star_toggle(*, run: Run, user) -> bool:
    """Star or unstar; True if the run is now starred."""
    deleted, _ = RunStar.objects.filter(run=run, user=user).delete()
    if deleted:
        return False
    RunStar.objects.get_or_create(run=run, user=user)
    return True


def run_tag_add(*, run: Run, actor, name: str) -> RunTag:
    name = " ".join(name.split()).lower()[:40]
    if not name:
        raise ValidationError("A tag needs a name.")
    with transaction.atomic():
        tag, created = RunTag.objects.get_or_create(run=run, name=name)
        if created:
            activity_record(run=run, actor=actor, verb=Verb.TAGGED, detail=name)
    return tag


def run_tag_remove(*, run: Run, tag_id: int) -> None:
    RunTag.objects.filter(run=run, pk=tag_id).delete()


def run_notes_set(*, run: Run, actor, notes: str) -> None:
    with transaction.atomic():
        Run.objects.filter(pk=run.pk).update(notes=notes)
        activity_record(run=run, actor=actor, verb=Verb.NOTED, detail=notes[:120])
