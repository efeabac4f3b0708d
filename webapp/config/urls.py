from django.contrib.auth import views as auth_views
from django.urls import include, path

from webapp.api.api import api

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("webapp.projects.urls")),
    path("", include("webapp.teams.urls")),
    path("", include("webapp.experiments.urls")),
    path("", include("webapp.runs.urls")),
    path("", include("webapp.datasets.urls")),
    path("", include("webapp.reviews.urls")),
    path("", include("webapp.api.urls")),
    path("api/", api.urls),
    path("mlflow/<int:project_id>/", include("webapp.mlflow_compat.urls")),
]
