from django.urls import path, register_converter

from webapp.runs import (
    compare_views,
    evaluation_compare_views,
    leaderboard_views,
    rollout_views,
    stream,
    views,
)

register_converter(rollout_views.PromptIdConverter, "prompt_id")

app_name = "runs"
urlpatterns = [
    path("runs/<int:run_id>/", views.run_detail, name="detail"),
    path("runs/<int:run_id>/events/", stream.run_events, name="events"),
    path("runs/<int:run_id>/metrics.json", views.run_metrics, name="metrics"),
    path("runs/<int:run_id>/metrics.csv", views.run_metrics_csv, name="metrics_csv"),
    path("projects/<int:project_id>/compare/", compare_views.compare_runs, name="compare"),
    path("projects/<int:project_id>/leaderboard/", leaderboard_views.leaderboard,
         name="leaderboard"),
    path("projects/<int:project_id>/leaderboard/export.<str:fmt>",
         leaderboard_views.leaderboard_export, name="leaderboard_export"),
    path("projects/<int:project_id>/evaluations/compare/",
         evaluation_compare_views.evaluation_compare, name="evaluation_compare"),
    path("runs/<int:run_id>/cancel/", views.run_cancel_view, name="cancel"),
    path("runs/<int:run_id>/resume/", views.run_resume_view, name="resume"),
    path("runs/<int:run_id>/delete/", views.run_delete_view, name="delete"),
    path("runs/<int:run_id>/evaluation.<str:fmt>", views.evaluation_export,
         name="evaluation_export"),
    path("checkpoints/<int:checkpoint_id>/evaluate/", views.checkpoint_evaluate,
         name="checkpoint_evaluate"),
    path("runs/<int:run_id>/rollouts/", rollout_views.rollout_browser, name="rollouts"),
    path("runs/<int:run_id>/prompts/<prompt_id:prompt_id>/", rollout_views.prompt_history_view,
         name="prompt_history"),
]
