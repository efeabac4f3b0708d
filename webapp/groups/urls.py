from django.urls import path

from webapp.groups import views

app_name = "groups"
urlpatterns = [
    path("projects/<int:project_id>/groups/", views.groups_page, name="groups"),
    path("projects/<int:project_id>/groups/series/", views.group_series, name="series"),
    path("projects/<int:project_id>/statistics/", views.statistics_page, name="statistics"),
]
