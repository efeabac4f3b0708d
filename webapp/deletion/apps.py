from django.apps import AppConfig


class DeletionConfig(AppConfig):
    name = "webapp.deletion"
    label = "deletion"
