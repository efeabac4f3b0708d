"""Artifacts: files that tracked runs' scripts log (MLflow's log_artifact, log_dict, log_text,
log_table, log_image; transformers' checkpoints) and the models they log (MLflow 3's logged
models), kept in the artifact store: the local filesystem embedded, an S3-compatible bucket in
full mode."""
from django.apps import AppConfig


class ArtifactsConfig(AppConfig):
    name = "webapp.artifacts"
    label = "artifacts"

    def ready(self) -> None:
        from webapp.artifacts.sizes import project_artifacts_bytes
        from webapp.projects.disk_use import disk_use_part_register

        disk_use_part_register("artifacts", project_artifacts_bytes)
