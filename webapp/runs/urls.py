from django.urls import path

from webapp.runs import stream, views

app_name = "runs"
urlpatterns = [
    path("runs/<int:run_id>/", views.run_detail, name="detail"),
    path("runs/<int:run_id>/events/", stream.run_events, name="events"),
    path("runs/<int:run_id>/metrics.json", views.run_metrics, name="metrics"),
    path("runs/<int:run_id>/cancel/", views.run_cancel_view, name="cancel"),
    path("runs/<int:run_id>/resume/", views.run_resume_view, name="resume"),
]
