"""Mounted at /mlflow/<project_id>/, the tracking URI of a project. The paths are MLflow's own
(mlflow/protos/service.proto), so they keep its names and take no trailing slash; they have no
URL names, since nothing in rlab links to them."""

from django.urls import path, re_path

from webapp.mlflow_compat import artifacts, logged_models, search, views

PREFIX = "api/2.0/mlflow/"
ARTIFACTS = "api/2.0/mlflow-artifacts/artifacts"
MODELS = f"{PREFIX}logged-models"

urlpatterns = [
    path("", views.project_page),
    path(f"{PREFIX}experiments/get-by-name", views.experiment_get_by_name),
    path(f"{PREFIX}experiments/get", views.experiment_get),
    path(f"{PREFIX}experiments/create", views.experiment_create),
    path(f"{PREFIX}runs/create", views.run_create),
    path(f"{PREFIX}runs/get", views.run_get),
    path(f"{PREFIX}runs/update", views.run_update),
    path(f"{PREFIX}runs/log-metric", views.run_log_metric),
    path(f"{PREFIX}runs/log-parameter", views.run_log_parameter),
    path(f"{PREFIX}runs/set-tag", views.run_set_tag),
    path(f"{PREFIX}runs/log-batch", views.run_log_batch),
    path(f"{PREFIX}runs/search", search.runs_search_view),
    path(f"{PREFIX}experiments/search", search.experiments_search_view),
    path(f"{PREFIX}metrics/get-history", search.metric_history),
    # The MLflow UI's charts call this one under ajax-api/.
    *[path(f"{prefix}metrics/get-history-bulk-interval", search.metric_history_bulk_interval)
      for prefix in (PREFIX, f"ajax-{PREFIX}")],
    path(f"{PREFIX}runs/log-inputs", views.run_log_inputs),
    path(f"{PREFIX}runs/outputs", logged_models.run_log_outputs),
    path(ARTIFACTS, artifacts.artifact_list),
    path(f"{ARTIFACTS}/<path:location>", artifacts.artifact_file),
    path(MODELS, logged_models.model_create),
    path(f"{MODELS}/search", logged_models.model_search),
    path(f"{MODELS}/<str:model_id>", logged_models.model_item),
    path(f"{MODELS}/<str:model_id>/tags", logged_models.model_set_tags),
    path(f"{MODELS}/<str:model_id>/tags/<path:tag_key>", logged_models.model_delete_tag),
    path(f"{MODELS}/<str:model_id>/params", logged_models.model_log_params),
    # Every other MLflow call (traces, the UI's other ajax-api calls): refused
    # in MLflow's words, so the client raises a readable error instead of retrying.
    re_path(r"^(?P<path>(?:ajax-)?api/.*)$", views.not_implemented),
]
