from django.urls import path

from webapp.live import stream, views

app_name = "live"
urlpatterns = [
    path("runs/<int:run_id>/events/", stream.run_events, name="events"),
    path("runs/<int:run_id>/metrics.json", views.run_metrics, name="metrics"),
    path("runs/<int:run_id>/metrics.csv", views.run_metrics_csv, name="metrics_csv"),
]
