from django.urls import path

from webapp.runs import views

app_name = "runs"
urlpatterns = [
    path("runs/<int:run_id>/", views.run_detail, name="detail"),
    path("projects/<int:project_id>/compare/", views.compare_runs, name="compare"),
    path("experiments/<int:experiment_id>/launch/", views.run_launch_view, name="launch"),
    path("runs/<int:run_id>/cancel/", views.run_cancel_view, name="cancel"),
    path("runs/<int:run_id>/resume/", views.run_resume_view, name="resume"),
]
