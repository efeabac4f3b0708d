from django.urls import path

from webapp.experiments import views

app_name = "experiments"
urlpatterns = [
    path("projects/<int:project_id>/experiments/new/", views.experiment_create_view,
         name="create"),
    path("experiments/<int:experiment_id>/", views.experiment_detail, name="detail"),
    path("experiments/<int:experiment_id>/edit/", views.experiment_edit, name="edit"),
    path("experiments/<int:experiment_id>/launch/", views.experiment_launch, name="launch"),
]
