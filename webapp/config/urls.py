from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import include, path

from webapp.api.api import api
from webapp.teams import views as account_views

# Accounts: Django's views and names (its views reverse them without a namespace). A reset link
# comes by email where this server sends mail (EMAIL_HOST), or from an administrator
# (`manage.py password_link`, or staff's page); either way it opens password_reset_confirm.
reset_by_email = {"reset_by_email": settings.RLAB_PASSWORD_RESET_BY_EMAIL}
accounts = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True,
                                                extra_context=reset_by_email), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("account/password/changed/", auth_views.PasswordChangeDoneView.as_view(),
         name="password_change_done"),
    path("account/password/reset/", account_views.password_reset, name="password_reset"),
    path("account/password/reset/sent/", auth_views.PasswordResetDoneView.as_view(),
         name="password_reset_done"),
    path("account/password/reset/<uidb64>/<token>/",
         auth_views.PasswordResetConfirmView.as_view(extra_context=reset_by_email),
         name="password_reset_confirm"),
    path("account/password/reset/done/", auth_views.PasswordResetCompleteView.as_view(),
         name="password_reset_complete"),
    path("account/password/links/", account_views.password_links, name="password_links"),
]

urlpatterns = [
    *accounts,
    path("", include("webapp.projects.urls")),
    path("", include("webapp.teams.urls")),
    path("", include("webapp.experiments.urls")),
    path("", include("webapp.runs.urls")),
    path("", include("webapp.runs_table.urls")),
    path("", include("webapp.live.urls")),
    path("", include("webapp.rollouts.urls")),
    path("", include("webapp.evaluations.urls")),
    path("", include("webapp.artifacts.urls")),
    path("", include("webapp.datasets.urls")),
    path("", include("webapp.reviews.urls")),
    path("", include("webapp.sweeps.urls")),
    path("", include("webapp.jobs.urls")),
    path("", include("webapp.deletion.urls")),
    path("", include("webapp.queue.urls")),
    path("", include("webapp.groups.urls")),
    path("", include("webapp.api.urls")),
    path("api/", api.urls),
    path("mlflow/<int:project_id>/", include("webapp.mlflow_compat.urls")),
]
