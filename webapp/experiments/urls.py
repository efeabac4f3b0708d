from django.urls import path

from webapp.experiments import views
from webapp.experiments.models import ExperimentKind

app_name = "experiments"
urlpatterns = [
    path("projects/<int:project_id>/experiments/new/", views.experiment_create_view,
         name="create"),
    path("projects/<int:project_id>/evaluations/new/", views.experiment_create_view,
         {"kind": ExperimentKind.EVALUATION}, name="create_evaluation"),
    path("experiments/<int:experiment_id>/", views.experiment_detail, name="detail"),
    path("experiments/<int:experiment_id>/edit/", views.experiment_edit, name="edit"),
]
