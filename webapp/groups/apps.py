from django.apps import AppConfig


class GroupsConfig(AppConfig):
    name = "webapp.groups"
    label = "groups"
