from django.apps import AppConfig


class RunsTableConfig(AppConfig):
    name = "webapp.runs_table"
    label = "runs_table"
