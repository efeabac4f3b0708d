from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "webapp.runs"
    label = "runs"

    def ready(self) -> None:
        # The apps beneath this one ask it, without importing it: an experiment's config may
        # name a checkpoint (a run's), and a project's runs take room on disk.
        from webapp.experiments.services import config_check_register
        from webapp.projects.disk_use import disk_use_part_register
        from webapp.runs.model_sources import config_model_errors
        from webapp.runs.selectors import project_runs_bytes

        config_check_register(config_model_errors)
        disk_use_part_register("runs", project_runs_bytes)
