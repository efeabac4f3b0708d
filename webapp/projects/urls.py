from django.urls import path

from webapp.projects import views

app_name = "projects"
urlpatterns = [
    path("", views.project_list, name="list"),
    path("healthz", views.healthz, name="healthz"),
    path("projects/<int:project_id>/", views.project_detail, name="detail"),
    path("projects/<int:project_id>/chart-layout/", views.project_chart_layout,
         name="chart_layout"),
    path("projects/<int:project_id>/settings/", views.project_settings, name="settings"),
]
