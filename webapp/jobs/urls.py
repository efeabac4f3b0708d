from django.urls import path

from webapp.jobs import views

app_name = "jobs"
urlpatterns = [
    path("teams/<int:team_id>/job-templates/", views.template_list, name="list"),
    path("teams/<int:team_id>/job-templates/new/", views.template_create_view, name="create"),
    path("teams/<int:team_id>/job-templates/examples/", views.examples_add, name="examples"),
    path("job-templates/<int:template_id>/", views.template_detail, name="detail"),
    path("job-templates/<int:template_id>/edit/", views.template_edit_view, name="edit"),
    path("job-templates/<int:template_id>/delete/", views.template_delete_view, name="delete"),
    path("job-templates/<int:template_id>/launch/", views.template_launch_view, name="launch"),
]
