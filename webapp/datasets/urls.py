from django.urls import path

from webapp.datasets import views

app_name = "datasets"
urlpatterns = [
    path("projects/<int:project_id>/datasets/", views.dataset_list, name="list"),
    path("projects/<int:project_id>/datasets/new/", views.dataset_upload, name="upload"),
    path("projects/<int:project_id>/datasets/new/<str:upload_token>/", views.dataset_confirm,
         name="confirm"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="detail"),
    path("datasets/<int:dataset_id>/download/", views.dataset_download, name="download"),
]
