from django.db import models


class Worker(models.Model):
    """A Celery worker process as its housekeeping last reported it."""

    name = models.CharField(max_length=200, unique=True,
                            help_text="Celery's node name (celery@host), as runs record it.")
    host = models.CharField(max_length=200)
    pid = models.PositiveIntegerField(null=True)
    queues = models.JSONField(default=list, help_text="The queues it consumes.")
    device = models.CharField(max_length=100, blank=True, help_text="cpu, or the GPU it has.")
    slots = models.PositiveIntegerField(default=1, help_text="Runs it can run at once.")
    devices = models.JSONField(
        default=list, blank=True,
        help_text="The devices it gives runs (CUDA ids, or CPU slots cpu0, cpu1…); a run that "
                  "needs N waits for a worker with N of them free.")
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
