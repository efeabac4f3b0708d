from django.urls import path

from webapp.artifacts import views

app_name = "artifacts"
urlpatterns = [
    path("runs/<int:run_id>/artifacts/", views.artifact_list, name="list"),
    path("runs/<int:run_id>/artifacts/<int:artifact_id>/", views.artifact_detail, name="detail"),
    path("runs/<int:run_id>/artifacts/<int:artifact_id>/download/", views.artifact_download,
         name="download"),
    path("runs/<int:run_id>/artifacts/<int:artifact_id>/image/", views.artifact_image,
         name="image"),
]
