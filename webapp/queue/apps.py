from django.apps import AppConfig


class QueueConfig(AppConfig):
    name = "webapp.queue"
    label = "queue"
