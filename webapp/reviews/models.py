"""Review of results by a team: comments on runs, labelled annotations on single rollouts,
stars and tags on runs, and the activity feed of a project."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.projects.activity import Verb

# Labels every team has; teams add their own (TeamLabel).
BUILTIN_LABELS = ["reward hacking", "correct", "wrong answer", "format error"]


class TeamLabel(models.Model):
    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=40)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"],
                                               name="label_unique_in_team")]

    def __str__(self) -> str:
        return self.name


class Comment(models.Model):
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                               related_name="+")
    body = models.TextField(max_length=10_000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]


class Annotation(models.Model):
    rollout = models.ForeignKey("runs.Rollout", on_delete=models.CASCADE,
                                related_name="annotations")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                               related_name="+")
    label = models.CharField(max_length=40)
    note = models.TextField(max_length=5_000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["rollout", "author", "label"],
                                               name="annotation_label_once_per_author")]


class RunStar(models.Model):
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="stars")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "user"], name="star_once")]


class RunTag(models.Model):
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="tag_once_per_run")]


class Activity(models.Model):
    """Who did what, when, in a project: the feed a team reads to catch up."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE,
                                related_name="activities")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="+")
    verb = models.CharField(max_length=16, choices=Verb.choices)
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, null=True, blank=True,
                            related_name="+")
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
