"""The project's feed as the apps that act in a project announce to it: what was done (Verb),
and the signal they send (`activity`). Lower apps (runs) send it without importing the feed;
webapp.reviews, which keeps the feed (reviews.Activity) beside comments and annotations, records
each one, in the sender's transaction (signals are synchronous)."""

from __future__ import annotations

from django.db import models
from django.dispatch import Signal


class Verb(models.TextChoices):
    LAUNCHED = "launched"
    RESUMED = "resumed"
    CANCELLED = "cancelled"
    COMMENTED = "commented"
    ANNOTATED = "annotated"
    TAGGED = "tagged"
    NOTED = "noted"
    # A run, an experiment or a dataset, named in the detail: the row it was is gone.
    DELETED = "deleted"


# Sent with run (a Run), actor (a user), verb (a Verb) and detail (a short text).
activity = Signal()
