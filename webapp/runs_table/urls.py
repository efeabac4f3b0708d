from django.urls import path

from webapp.runs_table import views

app_name = "runs_table"
urlpatterns = [
    path("projects/<int:project_id>/runs/", views.runs_table, name="table"),
    path("projects/<int:project_id>/runs/columns/", views.column_picker, name="columns"),
    path("projects/<int:project_id>/runs/act/", views.runs_act, name="act"),
]
