from django.urls import path

from webapp.deletion import views

app_name = "deletion"
urlpatterns = [
    path("projects/<int:project_id>/delete/", views.project_delete_view, name="project"),
    path("experiments/<int:experiment_id>/delete/", views.experiment_delete_view,
         name="experiment"),
    path("runs/<int:run_id>/delete/", views.run_delete_view, name="run"),
    path("datasets/<int:dataset_id>/delete/", views.dataset_delete_view, name="dataset"),
]
