from django.urls import path

from webapp.evaluations import views

app_name = "evaluations"
urlpatterns = [
    path("projects/<int:project_id>/leaderboard/", views.leaderboard, name="leaderboard"),
    path("projects/<int:project_id>/leaderboard/export.<str:fmt>", views.leaderboard_export,
         name="leaderboard_export"),
    path("projects/<int:project_id>/evaluations/compare/", views.evaluation_compare,
         name="compare"),
    path("experiments/<int:experiment_id>/evaluate/", views.evaluation_launch_view,
         name="launch"),
    path("runs/<int:run_id>/evaluation.<str:fmt>", views.evaluation_export, name="export"),
    path("checkpoints/<int:checkpoint_id>/evaluate/", views.checkpoint_evaluate,
         name="checkpoint_evaluate"),
]
