from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "webapp.datasets"
    label = "datasets"

    def ready(self) -> None:
        # The project page shows what its datasets take on disk; projects, beneath this app,
        # asks through its registry.
        from webapp.datasets.selectors import project_datasets_bytes
        from webapp.projects.disk_use import disk_use_part_register

        disk_use_part_register("datasets", project_datasets_bytes)
