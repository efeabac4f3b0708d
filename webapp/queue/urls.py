from django.urls import path

from webapp.queue import views

app_name = "queue"
urlpatterns = [
    path("queue/", views.queue_page, name="queue"),
    path("queue/runs/<int:run_id>/priority/", views.run_priority_view, name="priority"),
    path("workers/", views.workers_page, name="workers"),
]
