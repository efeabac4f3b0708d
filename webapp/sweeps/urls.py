from django.urls import path

from webapp.sweeps import views

app_name = "sweeps"
urlpatterns = [
    path("projects/<int:project_id>/sweeps/", views.sweep_list, name="list"),
    path("projects/<int:project_id>/sweeps/new/", views.sweep_create_view, name="create"),
    path("sweeps/<int:sweep_id>/", views.sweep_detail, name="detail"),
    path("sweeps/<int:sweep_id>/cancel/", views.sweep_cancel_view, name="cancel"),
]
